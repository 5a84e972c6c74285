"""Gold: the star schema, the recommenders' interaction table and the "right now" KPI tables.

Plain functions over silver DataFrames; partitioned facts are built for the dates given and the
runner replaces exactly those partitions.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from spark_jobs.silver_events import version_at

# Implicit-feedback weight of one interaction, before time decay.
INTERACTION_WEIGHTS = {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
MONEY = "decimal(14,2)"
# how long after an impression a cart or purchase of a shown product is credited to it
ATTRIBUTION_WINDOW = dt.timedelta(hours=24)
# what an impression says about its request, carried to every product it showed
REQUEST_COLUMNS = (
    "request_id", "session_id", "customer_id", "experiment", "variant", "model_version"
)  # fmt: skip


def date_key(column: str) -> F.Column:
    return (F.year(column) * 10000 + F.month(column) * 100 + F.dayofmonth(column)).cast("int")


def dim_date(spark: SparkSession, first: dt.date, last: dt.date) -> DataFrame:
    """One row per day from the first of first's year to the end of last's year."""
    start, end = dt.date(first.year, 1, 1), dt.date(last.year, 12, 31)
    days = spark.sql(
        f"SELECT explode(sequence(DATE'{start}', DATE'{end}', interval 1 day)) AS date"
    )
    return days.select(
        date_key("date").alias("date_key"),
        "date",
        F.year("date").alias("year"),
        F.quarter("date").alias("quarter"),
        F.month("date").alias("month"),
        F.date_format("date", "MMMM").alias("month_name"),
        F.weekofyear("date").alias("iso_week"),
        F.dayofmonth("date").alias("day_of_month"),
        # ISO day of week: Monday = 1 … Sunday = 7
        (((F.dayofweek("date") + 5) % 7) + 1).alias("day_of_week"),
        F.date_format("date", "EEEE").alias("day_name"),
        F.dayofweek("date").isin(1, 7).alias("is_weekend"),
        F.date_format("date", "yyyy-MM").alias("year_month"),
    )


def dim_geography(geography: DataFrame) -> DataFrame:
    return geography.select("area_id", "area_name", "city_id", "city_name", "region")


def dim_customer(customers: DataFrame, geography: DataFrame) -> DataFrame:
    """SCD2 customers with the city/area/region of each version."""
    geo = geography.select("area_id", "area_name", "city_name", "region")
    return customers.join(geo, "area_id", "left").select(
        "customer_sk",
        "customer_id",
        "customer_code",
        "customer_name",
        "gender",
        "birth_date",
        "customer_type",
        "loyalty_tier",
        "registration_date",
        "status",
        "city_id",
        "city_name",
        "region",
        "area_id",
        "area_name",
        "valid_from",
        "valid_to",
        "is_current",
        "version",
    )


def dim_product(products: DataFrame, hierarchy: DataFrame, brands: DataFrame) -> DataFrame:
    """SCD2 products with brand, subcategory and category of each version."""
    return (
        products.join(hierarchy, "subcategory_id", "left")
        .join(brands, "brand_id", "left")
        .select(
            "product_sk",
            "product_id",
            "sku",
            "product_name",
            "description",
            "brand_id",
            "brand_name",
            "category_id",
            "category_name",
            "subcategory_id",
            "subcategory_name",
            "list_price",
            "unit_cost",
            "launch_date",
            "is_active",
            "valid_from",
            "valid_to",
            "is_current",
            "version",
        )
    )


def fact_sales_line(
    sales: DataFrame, lines: DataFrame, customers: DataFrame, products: DataFrame
) -> DataFrame:
    """Grain: one invoice line. Keys are the customer/product versions valid at invoice time.

    The order coupon (header discount beyond the lines' own) is spread over the lines in
    proportion to their amounts so that Σ net_amount per invoice equals the header's net amount:
    the last line takes the rounding remainder."""
    header = sales.select(
        "invoice_id",
        "invoice_time",
        "customer_id",
        "city_id",
        "area_id",
        "branch_code",
        "channel",
        "payment_type",
        "invoice_type",
        "status",
        "is_cancelled",
        "order_coupon_amount",
    )
    joined = lines.drop("is_return", "is_cancelled").join(header, "invoice_id")
    invoice = Window.partitionBy("invoice_id")
    last_line = Window.partitionBy("invoice_id").orderBy(F.col("line_no").desc())
    share = F.when(
        F.sum("line_amount").over(invoice) != 0,
        F.round(
            F.col("order_coupon_amount")
            * F.col("line_amount")
            / F.sum("line_amount").over(invoice),
            2,
        ),
    ).otherwise(F.lit(0))
    joined = joined.withColumn("_share", share.cast(MONEY))
    remainder = F.col("order_coupon_amount") - F.sum("_share").over(invoice)
    joined = joined.withColumn(
        "coupon_amount",
        F.when(F.row_number().over(last_line) == 1, F.col("_share") + remainder)
        .otherwise(F.col("_share"))
        .cast(MONEY),
    ).withColumnRenamed("invoice_time", "event_time")
    keyed = version_at(joined, customers, "customer_id", "customer_sk")
    keyed = version_at(keyed, products, "product_id", "product_sk")
    cost = products.select("product_sk", "list_price", "unit_cost")
    return keyed.join(cost, "product_sk", "left").select(
        "invoice_id",
        "line_no",
        "invoice_date",
        F.col("event_time").alias("invoice_time"),
        date_key("invoice_date").alias("date_key"),
        "customer_sk",
        "customer_id",
        "product_sk",
        "product_id",
        "city_id",
        "area_id",
        "branch_code",
        "channel",
        "payment_type",
        "invoice_type",
        (F.col("invoice_type") == "Return").alias("is_return"),
        "status",
        "is_cancelled",
        "quantity",
        "unit_price",
        F.col("list_price").alias("list_price_at_sale"),
        (F.col("quantity") * F.col("unit_price")).cast(MONEY).alias("gross_amount"),
        F.col("discount_amount").alias("line_discount_amount"),
        "coupon_amount",
        (F.col("line_amount") - F.col("coupon_amount")).cast(MONEY).alias("net_amount"),
        (F.col("quantity") * F.col("unit_cost")).cast(MONEY).alias("cost_amount"),
        (F.col("line_amount") - F.col("coupon_amount") - F.col("quantity") * F.col("unit_cost"))
        .cast(MONEY)
        .alias("margin_amount"),
    )


def fact_events(events: DataFrame) -> DataFrame:
    """Grain: one clean clickstream event."""
    return events.select(
        "event_id",
        "event_date",
        "event_time",
        date_key("event_date").alias("date_key"),
        "event_type",
        "session_id",
        "event_seq",
        "customer_sk",
        "customer_id",
        "product_sk",
        "product_id",
        "device",
        "city",
        "search_query",
        "quantity",
        "price",
        "order_id",
    )


def fact_sessions(events: DataFrame, dates: list[dt.date]) -> DataFrame:
    """Grain: one session, filed under the date it started (`events` must include the day after
    each date, where sessions that started before midnight end)."""
    t = F.col("event_type")
    sessions = events.groupBy("session_id").agg(
        F.min("session_start").alias("session_start"),
        F.max("session_end").alias("session_end"),
        F.count("*").alias("events"),
        F.sum((t == "page_view").cast("int")).alias("page_views"),
        F.sum((t == "product_view").cast("int")).alias("product_views"),
        F.sum((t == "search").cast("int")).alias("searches"),
        F.sum((t == "add_to_cart").cast("int")).alias("adds_to_cart"),
        F.sum((t == "remove_from_cart").cast("int")).alias("removes_from_cart"),
        F.sum((t == "purchase").cast("int")).alias("purchase_lines"),
        F.countDistinct("order_id").alias("orders"),
        F.sum(F.when(t == "purchase", F.col("price") * F.col("quantity")))
        .cast(MONEY)
        .alias("revenue"),
        F.max("customer_id").alias("customer_id"),
        F.max("customer_sk").alias("customer_sk"),
        F.min_by("device", "event_seq").alias("device"),
        F.min_by("city", "event_seq").alias("city"),
    )
    return (
        sessions.withColumn("session_date", F.to_date("session_start"))
        .where(F.col("session_date").isin([F.lit(d) for d in dates]))
        .select(
            "session_id",
            "session_date",
            date_key("session_date").alias("date_key"),
            "session_start",
            "session_end",
            (F.col("session_end").cast("long") - F.col("session_start").cast("long")).alias(
                "duration_seconds"
            ),
            "customer_id",
            "customer_sk",
            "device",
            "city",
            "events",
            "page_views",
            "product_views",
            "searches",
            "adds_to_cart",
            "removes_from_cart",
            "purchase_lines",
            "orders",
            F.coalesce("revenue", F.lit(0).cast(MONEY)).alias("revenue"),
            (F.col("orders") > 0).alias("converted"),
        )
    )


def recommendation_exposures(
    shown: DataFrame, events: DataFrame, dates: list[dt.date]
) -> DataFrame:
    """Grain: one product one recommendation request showed, filed under the impression's date:
    its position, whether it was clicked, and the add-to-cart and purchase of it that followed
    in the same session within ATTRIBUTION_WINDOW. An action is credited to the latest
    impression that showed the product before it (last touch), so a list shown on every page
    does not count one purchase many times. `shown` (silver.recommendation_events) and `events`
    (silver.events) must include the day after each date."""
    window = ATTRIBUTION_WINDOW.total_seconds()
    impressions = shown.where(F.col("event_type") == "recommendation_impression").select(
        "event_date",
        F.col("event_time").alias("shown_at"),
        *REQUEST_COLUMNS,
        F.posexplode("recommended_product_ids").alias("slot", "product_id"),
    )
    clicks = (
        shown.where(F.col("event_type") == "recommendation_click")
        .groupBy("request_id", "product_id")
        .agg(F.min("event_time").alias("clicked_at"))
    )
    actions = events.where(F.col("event_type").isin("add_to_cart", "purchase")).select(
        "event_id",
        "session_id",
        "product_id",
        "event_type",
        F.col("event_time").alias("acted_at"),
        F.when(F.col("event_type") == "purchase", F.col("price") * F.col("quantity")).alias(
            "amount"
        ),
    )
    latest_first = Window.partitionBy("event_id").orderBy(F.col("shown_at").desc(), "request_id")
    elapsed = F.col("acted_at").cast("double") - F.col("shown_at").cast("double")
    credited = (
        impressions.select("request_id", "session_id", "product_id", "shown_at")
        .join(actions, ["session_id", "product_id"])
        .where((elapsed >= 0) & (elapsed <= window))
        .withColumn("_touch", F.row_number().over(latest_first))
        .where(F.col("_touch") == 1)
        .groupBy("request_id", "product_id")
        .agg(
            F.max((F.col("event_type") == "add_to_cart").cast("int")).alias("_carted"),
            F.max((F.col("event_type") == "purchase").cast("int")).alias("_purchased"),
            F.sum("amount").alias("_revenue"),
        )
    )
    return (
        impressions.where(F.col("event_date").isin([F.lit(d) for d in dates]))
        .join(clicks, ["request_id", "product_id"], "left")
        .join(credited, ["request_id", "product_id"], "left")
        .select(
            "event_date",
            date_key("event_date").alias("date_key"),
            "shown_at",
            *REQUEST_COLUMNS,
            (F.col("slot") + 1).cast("int").alias("position"),
            "product_id",
            F.col("clicked_at").isNotNull().alias("clicked"),
            "clicked_at",
            F.coalesce(F.col("_carted") == 1, F.lit(False)).alias("carted"),
            F.coalesce(F.col("_purchased") == 1, F.lit(False)).alias("purchased"),
            F.coalesce("_revenue", F.lit(0)).cast(MONEY).alias("revenue"),
        )
    )


def kpis(events: DataFrame, grain: str) -> DataFrame:
    """The "right now" tables: events, sessions, funnel and revenue per minute or hour."""
    t = F.col("event_type")
    return (
        events.withColumn("period_start", F.date_trunc(grain, "event_time"))
        .groupBy("event_date", "period_start")
        .agg(
            F.count("*").alias("events"),
            F.countDistinct("session_id").alias("active_sessions"),
            F.sum((F.col("event_seq") == 1).cast("int")).alias("new_sessions"),
            F.countDistinct("customer_id").alias("active_customers"),
            F.sum((t == "product_view").cast("int")).alias("product_views"),
            F.sum((t == "add_to_cart").cast("int")).alias("adds_to_cart"),
            F.countDistinct(F.when(t == "purchase", F.col("order_id"))).alias("orders"),
            F.coalesce(F.sum(F.when(t == "purchase", F.col("price") * F.col("quantity"))), F.lit(0))
            .cast(MONEY)
            .alias("revenue"),
        )
        .withColumn(
            "conversion_rate",
            F.when(F.col("active_sessions") > 0, F.col("orders") / F.col("active_sessions")),
        )
    )


def interaction_rows(events: DataFrame, sales_lines: DataFrame) -> DataFrame:
    """Every implicit-feedback signal as one row (customer_id, product_id, event_type, at, units,
    w): views and carts from the clickstream, purchases from the ERP (all channels, stores too;
    cancelled orders and returns excluded), `w` their INTERACTION_WEIGHTS weight before decay."""
    clicks = events.where(
        F.col("customer_id").isNotNull() & F.col("event_type").isin("product_view", "add_to_cart")
    ).select(
        "customer_id",
        "product_id",
        "event_type",
        F.col("event_time").alias("at"),
        F.lit(1).alias("units"),
    )
    bought = sales_lines.where(~F.col("is_cancelled") & ~F.col("is_return")).select(
        "customer_id",
        "product_id",
        F.lit("purchase").alias("event_type"),
        F.col("invoice_time").alias("at"),
        F.col("quantity").alias("units"),
    )
    weight = F.create_map(
        *[x for k, v in INTERACTION_WEIGHTS.items() for x in (F.lit(k), F.lit(v))]
    )
    return clicks.unionByName(bought).withColumn("w", weight[F.col("event_type")])


def customer_product_interactions(
    events: DataFrame, sales_lines: DataFrame, as_of: dt.date, half_life_days: float
) -> DataFrame:
    """Implicit feedback per customer × product (see `interaction_rows`), each signal halved
    every `half_life_days` before `as_of`."""
    age_days = F.datediff(F.lit(as_of), F.to_date("at"))
    decay = F.pow(F.lit(0.5), age_days / F.lit(half_life_days))
    t = F.col("event_type")
    return (
        interaction_rows(events, sales_lines)
        .where(F.to_date("at") <= F.lit(as_of))
        .withColumn("w", F.col("w") * decay)
        .groupBy("customer_id", "product_id")
        .agg(
            F.sum((t == "product_view").cast("int")).alias("views"),
            F.sum((t == "add_to_cart").cast("int")).alias("adds_to_cart"),
            F.sum(F.when(t == "purchase", 1).otherwise(0)).alias("purchases"),
            F.sum(F.when(t == "purchase", F.col("units")).otherwise(0)).alias("units_bought"),
            F.min("at").alias("first_interaction"),
            F.max("at").alias("last_interaction"),
            F.round(F.sum("w"), 6).alias("weight"),
        )
        .withColumn("as_of", F.lit(as_of))
    )
