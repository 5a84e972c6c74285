"""silver.events from bronze.events: deduplicated, lateness-checked, keyed and sessionised;
the recommendation API's impressions and clicks (contract 1.1), checked by the same rules, go to
silver.recommendation_events instead, their 1.1 fields parsed from the payload.

The runner rebuilds whole event_date partitions, so every rule here is a pure function of the
bronze rows of those dates (plus a day either side, so sessions that cross midnight see all their
events): re-running a date gives the same rows.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from streaming.contract import RECOMMENDATION_EVENTS

SILVER_EVENT_COLUMNS = [
    "event_id",
    "event_date",
    "event_time",
    "event_type",
    "session_id",
    "session_start",
    "session_end",
    "event_seq",
    "customer_id",
    "customer_sk",
    "product_id",
    "product_sk",
    "category_path",
    "brand",
    "price",
    "quantity",
    "order_id",
    "search_query",
    "device",
    "city",
    "schema_version",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
]

RECOMMENDATION_EVENT_COLUMNS = [
    "event_id",
    "event_date",
    "event_time",
    "event_type",
    "session_id",
    "customer_id",
    "customer_sk",
    "product_id",
    "product_sk",
    "request_id",
    "experiment",
    "variant",
    "model_version",
    "position",
    "recommended_product_ids",
    "device",
    "schema_version",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
]
# the 1.1 fields bronze keeps only in the payload
RECOMMENDATION_PAYLOAD = (
    "request_id STRING, experiment STRING, variant STRING, model_version STRING, "
    "position INT, recommended_product_ids ARRAY<BIGINT>"
)
PAYLOAD_FIELDS = [field.split()[0] for field in RECOMMENDATION_PAYLOAD.split(", ")]

# Quarantine reasons (coarse, to chart) - the detail goes in `detail`.
DUPLICATE = "duplicate_event_id"
FUTURE = "future_event_time"
LATE = "late_beyond_window"
UNKNOWN_CUSTOMER = "unknown_customer"
UNKNOWN_PRODUCT = "unknown_product"
ORPHAN_REASONS = (UNKNOWN_CUSTOMER, UNKNOWN_PRODUCT)


def _in_dates(column: str, dates: list[dt.date]) -> Column:
    return F.col(column).isin([F.lit(d) for d in dates])


def version_at(events: DataFrame, dim: DataFrame, id_col: str, sk_col: str) -> DataFrame:
    """Attach the surrogate key of the SCD2 version valid at event_time (the first version also
    covers anything earlier). Events without the id keep a null key."""
    versions = dim.select(
        F.col(id_col).alias("_id"),
        F.col(sk_col),
        F.col("valid_from").alias("_from"),
        F.col("valid_to").alias("_to"),
        F.col("version").alias("_version"),
    )
    cond = (
        (F.col(id_col) == F.col("_id"))
        & (F.col("event_time") < F.col("_to"))
        & ((F.col("event_time") >= F.col("_from")) | (F.col("_version") == 1))
    )
    return events.join(versions, cond, "left").drop("_id", "_from", "_to", "_version")


def build(
    bronze: DataFrame,
    customers: DataFrame,
    products: DataFrame,
    dates: list[dt.date],
    *,
    lateness: dt.timedelta,
    future_tolerance: dt.timedelta,
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(silver rows, quarantine rows, recommendation event rows) for `dates`.

    bronze: bronze.events rows of `dates` and the day before and after each; customers/products:
    silver.customers/silver.products (SCD2). Rules, first match wins: a repeated event_id is a
    duplicate (the copy with the lowest Kafka partition/offset is kept); an event_time more than
    `future_tolerance` after its Kafka timestamp is from the future; one more than `lateness`
    before it arrived too late; a customer_id/product_id with no master record is an orphan.
    """
    first_copy = Window.partitionBy("event_id").orderBy("kafka_partition", "kafka_offset")
    arrived_after = F.col("kafka_timestamp").cast("long") - F.col("event_time").cast("long")
    checked = bronze.withColumn("_copy", F.row_number().over(first_copy))
    checked = version_at(checked, customers, "customer_id", "customer_sk")
    checked = version_at(checked, products, "product_id", "product_sk")
    reason = (
        F.when(F.col("_copy") > 1, F.lit(DUPLICATE))
        .when(-arrived_after > future_tolerance.total_seconds(), F.lit(FUTURE))
        .when(arrived_after > lateness.total_seconds(), F.lit(LATE))
        .when(
            F.col("customer_id").isNotNull() & F.col("customer_sk").isNull(),
            F.lit(UNKNOWN_CUSTOMER),
        )
        .when(
            F.col("product_id").isNotNull() & F.col("product_sk").isNull(), F.lit(UNKNOWN_PRODUCT)
        )
    )
    detail = (
        F.when(F.col("_copy") > 1, F.format_string("copy %d of the event", F.col("_copy")))
        .when(
            -arrived_after > future_tolerance.total_seconds(),
            F.format_string("event_time %.1f h after its Kafka timestamp", -arrived_after / 3600),
        )
        .when(
            arrived_after > lateness.total_seconds(),
            F.format_string(
                "arrived %.1f h after event_time (window %.1f h)",
                arrived_after / 3600,
                F.lit(lateness.total_seconds() / 3600),
            ),
        )
        .when(
            F.col("customer_id").isNotNull() & F.col("customer_sk").isNull(),
            F.format_string("customer_id %d is not in silver.customers", F.col("customer_id")),
        )
        .otherwise(F.format_string("product_id %d is not in silver.products", F.col("product_id")))
    )
    checked = checked.withColumn("reason", reason)

    quarantine = (
        checked.where(F.col("reason").isNotNull() & _in_dates("event_date", dates))
        .withColumn("detail", detail)
        .select(
            "event_date",
            "event_id",
            "event_time",
            "event_type",
            "reason",
            "detail",
            "payload",
            "kafka_partition",
            "kafka_offset",
            "kafka_timestamp",
        )
    )

    clean = checked.where(F.col("reason").isNull())
    shown = F.col("event_type").isin(*RECOMMENDATION_EVENTS)
    fields = F.from_json("payload", RECOMMENDATION_PAYLOAD)
    recommendations = (
        clean.where(shown & _in_dates("event_date", dates))
        .select("*", *(fields[name].alias(name) for name in PAYLOAD_FIELDS))
        .select(*RECOMMENDATION_EVENT_COLUMNS)
    )
    session = Window.partitionBy("session_id")
    in_order = Window.partitionBy("session_id").orderBy("event_time", "event_id")
    silver = (
        clean.where(~shown)
        .withColumn("session_start", F.min("event_time").over(session))
        .withColumn("session_end", F.max("event_time").over(session))
        .withColumn("event_seq", F.row_number().over(in_order).cast("int"))
        .withColumn("price", F.round("price", 2).cast("decimal(14,2)"))
        .where(_in_dates("event_date", dates))
        .select(*SILVER_EVENT_COLUMNS)
    )
    return silver, quarantine, recommendations
