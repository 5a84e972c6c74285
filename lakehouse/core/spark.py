"""The one way to get a Spark session: Spark Connect at SPARK_REMOTE (Sail locally)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_session(remote: str) -> SparkSession:
    """A new Spark Connect session for `remote` (SPARK_REMOTE); stop it when done.

    A session of its own, not PySpark's shared default: a step that stops its session when it
    ends must not stop one that other code in the process is using.

    The session time zone is UTC: every timestamp in the lake is UTC, and dates derived from
    them (partitions) must not depend on the server's local zone."""
    allow_spark_connect_import()
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(remote).create()
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return session


def allow_spark_connect_import() -> None:
    """pyspark's Spark Connect import takes a process whose `__main__` has neither a spec nor a
    file for a doctest run, then looks for a local Spark installation and exits without one.
    Dagster's in-process run workers, pytest-xdist workers and `python -c` are such processes:
    give their `__main__` a file name. Call it before importing pyspark.sql.connect or Great
    Expectations (which imports it)."""
    main = sys.modules.get("__main__")
    looks_like_doctest = (
        main is not None
        and getattr(main, "__spec__", None) is None
        and not hasattr(main, "__file__")
        and not hasattr(sys, "ps1")
    )
    if looks_like_doctest:
        main.__file__ = sys.argv[0] or "lakehouse"
