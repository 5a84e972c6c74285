"""Retries for steps that talk to the broker, Spark Connect or the ERP database.

A broker or Spark Connect server that is briefly down (a restart, a network blip) fails a step
with a connection error; retrying with backoff rides it out. Failures that retrying cannot fix
(bad run config, a missing input, a failed quality gate) are raised as `dg.Failure(...,
allow_retries=False)` or reported as failed checks, so they are not retried.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from lakehouse.core.lake import is_disk_full

TRANSIENT_RETRY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@contextmanager
def failing_fast_when_the_disk_is_full(what: str, where: str) -> Iterator[None]:
    """A full disk under the lake is not transient: fail at once (no retries), saying so."""
    try:
        yield
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        reason = str(exc).strip().splitlines()[0][:300]
        raise dg.Failure(
            f"{what}: the disk under {where} is full ({reason}). The write was not committed: "
            "every table keeps its last version. Free space and run it again; nothing needs "
            "cleaning up first.",
            allow_retries=False,
        ) from exc
