"""Resources shared by every domain: Kafka, the lake, the ERP database and Spark Connect.

Their values default to the settings module (environment variables over embedded defaults), so
the same code location runs on the embedded services and on docker-compose's real ones.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg

from lakehouse.lake import open_table, storage_options
from lakehouse.settings import Settings, get_settings


class KafkaResource(dg.ConfigurableResource):
    """The Kafka cluster the clickstream arrives on."""

    bootstrap_servers: str
    events_topic: str
    consumer_group: str = ""  # default: lakehouse-bronze-<topic>


class LakeResource(dg.ConfigurableResource):
    """The Delta Lake root (local path or s3://)."""

    uri: str
    aws_endpoint_url: str | None = None

    def table_uri(self, layer: str, name: str) -> str:
        return platform_settings(lake=self).table_uri(layer, name)

    def open(self, layer: str, name: str) -> Any:
        """The DeltaTable, or None when nothing has been written yet."""
        settings = platform_settings(lake=self)
        return open_table(settings.table_uri(layer, name), storage_options(settings))


class ErpDatabaseResource(dg.ConfigurableResource):
    """The ERP source database (any SQLAlchemy URL)."""

    url: str


class SparkConnectResource(dg.ConfigurableResource):
    """A Spark Connect server: Sail embedded, Apache Spark with Delta in production."""

    remote: str

    @contextmanager
    def session(self) -> Iterator[Any]:
        from lakehouse.spark import spark_session

        spark = spark_session(platform_settings(spark=self))
        try:
            yield spark
        finally:
            spark.stop()


def platform_settings(
    kafka: KafkaResource | None = None,
    lake: LakeResource | None = None,
    erp: ErpDatabaseResource | None = None,
    spark: SparkConnectResource | None = None,
) -> Settings:
    """The settings the platform's Python code takes, with the resources' values applied."""
    update: dict[str, Any] = {}
    if kafka is not None:
        update |= {
            "kafka_bootstrap_servers": kafka.bootstrap_servers,
            "events_topic": kafka.events_topic,
        }
    if lake is not None:
        update |= {"lake_uri": lake.uri, "aws_endpoint_url": lake.aws_endpoint_url}
    if erp is not None:
        update |= {"erp_db_url": erp.url}
    if spark is not None:
        update |= {"spark_remote": spark.remote}
    return get_settings().model_copy(update=update)


def default_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "kafka": KafkaResource(
            bootstrap_servers=settings.kafka_bootstrap_servers, events_topic=settings.events_topic
        ),
        "lake": LakeResource(uri=settings.lake_uri, aws_endpoint_url=settings.aws_endpoint_url),
        "erp": ErpDatabaseResource(url=settings.erp_db_url),
        "spark": SparkConnectResource(remote=settings.spark_remote),
    }
