"""The one way to get a Spark session: Spark Connect at SPARK_REMOTE (Sail locally)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from concurrent.futures import wait
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# PySpark's own client retries a server that does not answer for at least 10 minutes, without
# a word; ours gives up after about UNAVAILABLE_SECONDS and says what it waits for, so a step
# fails (and Dagster's retry policy takes over) instead of hanging silently.
UNAVAILABLE_SECONDS = 10.0
FIRST_BACKOFF_MS, MAX_BACKOFF_MS = 500, 8_000


def spark_session(
    remote: str,
    *,
    unavailable_seconds: float = UNAVAILABLE_SECONDS,
    on_retry: Callable[[str], None] | None = None,
) -> SparkSession:
    """A new Spark Connect session for `remote` (SPARK_REMOTE); stop it when done.

    A session of its own, not PySpark's shared default: a step that stops its session when it
    ends must not stop one that other code in the process is using.

    A server that stops answering (a restart) is retried for about `unavailable_seconds`, each
    retry reported to `on_retry`; then the call raises.

    The session time zone is UTC: every timestamp in the lake is UTC, and dates derived from
    them (partitions) must not depend on the server's local zone."""
    allow_spark_connect_import()
    from pyspark.sql import SparkSession

    # our own retry messages say when it gives up; PySpark's warning would only repeat it
    warnings.filterwarnings("ignore", message=r"\[RETRIES_EXCEEDED\]")
    session = SparkSession.builder.remote(remote).create()
    session.client.set_retry_policies([_bounded_policy(remote, unavailable_seconds, on_retry)])
    try:
        session.conf.set("spark.sql.session.timeZone", "UTC")
    except BaseException:
        stop_session(session)
        raise
    return session


def stop_session(session: SparkSession) -> None:
    """Release the session in one attempt: stopping is best effort, and a server that is gone
    must not hold the caller up for another round of retries."""
    session.client.set_retry_policies([])
    # pyspark ends the session before it waits for its executions' releases, which then fail
    # with warnings ("session ... is not running"): they are awaited first, as close() would
    wait(list(getattr(session.client, "_release_futures", ())), timeout=UNAVAILABLE_SECONDS)
    session.stop()


def retry_backoffs(unavailable_seconds: float) -> list[float]:
    """The waits (seconds) between retries of an unanswered call: doubling from 0.5 s, at most
    8 s each, until they add up to `unavailable_seconds`."""
    waits: list[float] = []
    wait = FIRST_BACKOFF_MS / 1000
    while sum(waits) + wait <= unavailable_seconds:
        waits.append(wait)
        wait = min(wait * 2, MAX_BACKOFF_MS / 1000)
    return waits


def _bounded_policy(
    remote: str, unavailable_seconds: float, on_retry: Callable[[str], None] | None
) -> object:
    from pyspark.sql.connect.client.retries import DefaultPolicy, RetryPolicyState

    waits = retry_backoffs(unavailable_seconds)

    class ReportingState(RetryPolicyState):
        """One call's retries; each is reported before its wait."""

        def next_attempt(self, exception: BaseException | None = None) -> int | None:
            wait_ms = super().next_attempt(exception)
            if wait_ms is not None and on_retry is not None:
                reason = "" if exception is None else f" ({_first_line(exception)})"
                on_retry(
                    f"Spark Connect at {remote} does not answer{reason}; retry {self._attempt} "
                    f"of {len(waits)} in {wait_ms / 1000:g}s (it gives up after "
                    f"{sum(waits):g}s in all)"
                )
            return wait_ms

    class BoundedPolicy(DefaultPolicy):
        """PySpark's policy (which errors to retry) with a bounded, reported budget."""

        def __init__(self) -> None:
            super().__init__(
                max_retries=len(waits),
                initial_backoff=FIRST_BACKOFF_MS,
                max_backoff=MAX_BACKOFF_MS,
                backoff_multiplier=2.0,
                jitter=0,
                max_server_retry_delay=MAX_BACKOFF_MS,
            )

        def to_state(self) -> RetryPolicyState:
            return ReportingState(self)

    return BoundedPolicy()


def _first_line(error: BaseException) -> str:
    details = getattr(error, "details", None)
    text = details() if callable(details) else str(error)
    return (text or type(error).__name__).strip().splitlines()[0][:160]


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
