"""Resources shared by every domain: the lake, Kafka, the ERP database, Spark Connect and the
knobs of the silver/gold transforms.

Each carries its configuration and the behaviour built on it (open or write a table, ingest the
topic, extract a table, a Spark session, a pipeline). `resources(settings)` fills them from the
settings module (environment variables over embedded defaults), so the same code location runs
on the embedded services and on docker-compose's real ones.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import dagster as dg
import pyarrow as pa

from lakehouse.core.lake import Lake
from lakehouse.core.settings import EMBEDDED_STORE_CREDENTIALS, Settings

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from ingestion.erp import ExtractReport
    from spark_jobs.pipeline import Pipeline
    from streaming.ingest import IngestReport


class LakeResource(dg.ConfigurableResource):
    """The Delta Lake root (LAKE_URI: a local path or s3://) and its S3 endpoint."""

    uri: str
    aws_endpoint_url: str | None = None
    embedded_store: bool = False  # the lake is a bucket of the embedded object store

    @property
    def lake(self) -> Lake:
        credentials = EMBEDDED_STORE_CREDENTIALS if self.embedded_store else None
        return Lake.at(self.uri, self.aws_endpoint_url, credentials)

    def table_uri(self, table: str) -> str:
        """Location of `layer.table`."""
        return self.lake.table_uri(table)

    def open(self, table: str) -> DeltaTable | None:
        """The Delta table `layer.table`, or None when nothing has been written yet."""
        return self.lake.open(table)

    def write(self, table: str, data: pa.Table, *, mode: str = "append", **options: Any) -> None:
        """Write Arrow data to `layer.table` with delta-rs."""
        self.lake.write(table, data, mode=mode, **options)


class KafkaResource(dg.ConfigurableResource):
    """The Kafka cluster the clickstream arrives on."""

    bootstrap_servers: str
    events_topic: str
    consumer_group: str = ""  # default: lakehouse-bronze-<topic>
    session_timeout_ms: int = 6000  # tansu takes about half of it to complete a group join

    def ingest(
        self,
        lake: Lake,
        *,
        on_batch: Callable[[IngestReport], None] = lambda _: None,
        **limits: Any,
    ) -> IngestReport:
        """Move what the topic holds now into bronze, exactly once, then stop."""
        from streaming.ingest import IngestOptions, ingest

        options = IngestOptions(
            topic=self.events_topic,
            group_id=self.consumer_group,
            session_timeout_ms=self.session_timeout_ms,
            **limits,
        )
        return ingest(lake, self.bootstrap_servers, options, on_batch=on_batch)

    def status(self, lake: Lake) -> dict[str, Any]:
        """Offsets recorded in bronze, the log end and the lag of the topic's partitions."""
        from streaming.ingest import ingest_status

        return ingest_status(lake, self.bootstrap_servers, self.events_topic)


class ErpDatabaseResource(dg.ConfigurableResource):
    """The ERP source database (ERP_DB_URL: any SQLAlchemy URL)."""

    url: str

    def extract(self, lake: Lake, source_table: str, *, full: bool = False) -> ExtractReport:
        """One ERP table into bronze: what changed since the watermark, or a full snapshot."""
        from ingestion.erp import extract_table

        return extract_table(lake, self.url, source_table, full=full)


class SparkConnectResource(dg.ConfigurableResource):
    """A Spark Connect server (SPARK_REMOTE): Sail embedded, Apache Spark with Delta in
    production."""

    remote: str
    # a server that does not answer is retried this long (each retry logged to the run)
    unavailable_seconds: float

    @contextmanager
    def session(self) -> Iterator[Any]:
        from lakehouse.core.spark import spark_session, stop_session

        spark = spark_session(
            self.remote,
            unavailable_seconds=self.unavailable_seconds,
            on_retry=dg.get_dagster_logger().warning,
        )
        try:
            yield spark
        finally:
            stop_session(spark)


class TransformResource(dg.ConfigurableResource):
    """The knobs of the silver and gold steps (TRANSFORM_BATCH_ROWS, SILVER_LATENESS_HOURS,
    SILVER_FUTURE_TOLERANCE_MINUTES, INTERACTION_HALF_LIFE_DAYS, QUALITY_*, ML_TEST_DAYS,
    ML_RANKER_TRAINING_CUSTOMERS, ML_RANKER_GENERATOR_CUSTOMERS)."""

    batch_rows: int
    lateness_hours: float
    future_tolerance_minutes: float
    interaction_half_life_days: float
    ml_test_days: int = 14  # the recommenders' windows: the days their features are snapshot
    # the training cutoffs' samples of buyers and of the customers their generators fit on
    ml_ranker_training_customers: int = 20_000
    ml_ranker_generator_customers: int = 100_000
    # the bounds of the distribution checks (QUALITY_*), which warn instead of blocking
    min_kept_share: float = 0.5
    min_dim_share: float = 0.9
    max_money: float = 10_000_000
    price_to_list_min: float = 0.5
    price_to_list_max: float = 2.0
    max_quantity: int = 1_000

    def pipeline(
        self,
        spark: Any,
        lake: Lake,
        on_batch: Callable[[str, int, int, set[dt.date]], None] = lambda *_: None,
    ) -> Pipeline:
        """The runner of the steps over this lake, through this Spark session."""
        from expectations.suites import Thresholds
        from spark_jobs.pipeline import Pipeline, TransformOptions

        options = TransformOptions(
            batch_rows=self.batch_rows,
            lateness=dt.timedelta(hours=self.lateness_hours),
            future_tolerance=dt.timedelta(minutes=self.future_tolerance_minutes),
            interaction_half_life_days=self.interaction_half_life_days,
            ml_test_days=self.ml_test_days,
            ranker_training_customers=self.ml_ranker_training_customers,
            ranker_generator_customers=self.ml_ranker_generator_customers,
            thresholds=Thresholds(
                min_kept_share=self.min_kept_share,
                min_dim_share=self.min_dim_share,
                max_money=self.max_money,
                price_to_list_min=self.price_to_list_min,
                price_to_list_max=self.price_to_list_max,
                max_quantity=self.max_quantity,
            ),
        )
        return Pipeline(spark, lake, options, on_batch=on_batch)


def resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "lake": LakeResource(
            uri=str(settings.lake_uri),
            aws_endpoint_url=settings.aws_endpoint_url,
            embedded_store=settings.lake_bucket_on_store is not None,
        ),
        "kafka": KafkaResource(
            bootstrap_servers=settings.kafka_bootstrap_servers, events_topic=settings.events_topic
        ),
        "erp": ErpDatabaseResource(url=str(settings.erp_db_url)),
        "spark": SparkConnectResource(
            remote=settings.spark_remote, unavailable_seconds=settings.spark_unavailable_seconds
        ),
        "transform": TransformResource(
            batch_rows=settings.transform_batch_rows,
            lateness_hours=settings.silver_lateness_hours,
            future_tolerance_minutes=settings.silver_future_tolerance_minutes,
            interaction_half_life_days=settings.interaction_half_life_days,
            ml_test_days=settings.ml_test_days,
            ml_ranker_training_customers=settings.ml_ranker_training_customers,
            ml_ranker_generator_customers=settings.ml_ranker_generator_customers,
            min_kept_share=settings.quality_min_kept_share,
            min_dim_share=settings.quality_min_dim_share,
            max_money=settings.quality_max_money,
            price_to_list_min=settings.quality_price_to_list_min,
            price_to_list_max=settings.quality_price_to_list_max,
            max_quantity=settings.quality_max_quantity,
        ),
    }
