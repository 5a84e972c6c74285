"""Retries for steps that talk to the broker, Spark Connect or the ERP database.

A broker or Spark Connect server that is briefly down (a restart, a network blip) fails a step
with a connection error; retrying with backoff rides it out. Failures that retrying cannot fix
(bad run config, a missing input, a failed quality gate) are raised as `dg.Failure(...,
allow_retries=False)` or reported as failed checks, so they are not retried.
"""

import dagster as dg

TRANSIENT_RETRY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
