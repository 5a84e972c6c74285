"""The one way to get a Spark session: Spark Connect at SPARK_REMOTE (Sail locally)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakehouse.settings import Settings, get_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_session(settings: Settings | None = None) -> SparkSession:
    """A Spark Connect session for the configured remote (cached per remote by PySpark).

    The session time zone is UTC: every timestamp in the lake is UTC, and dates derived from
    them (partitions) must not depend on the server's local zone."""
    from pyspark.sql import SparkSession

    settings = settings or get_settings()
    session = SparkSession.builder.remote(settings.spark_remote).getOrCreate()
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return session
