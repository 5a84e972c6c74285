"""Run failures recorded with their context, so they can be queried and charted, not only read
in the Dagster UI: one row per failed run in the Delta table ops.run_failures."""

import datetime as dt
import json

import dagster as dg
import pyarrow as pa

from orchestration.defs.resources import LakeResource

FAILURES_TABLE = "ops.run_failures"
FAILURES_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("job_name", pa.string()),
        ("failed_at", pa.timestamp("us", tz="UTC")),
        ("failed_steps", pa.string()),  # JSON list
        ("error", pa.string()),
        ("tags", pa.string()),  # JSON object: schedule, sensor, backfill, partition …
    ]
)


def failure_row(run: dg.DagsterRun, failed_steps: list[str], error: str | None) -> dict:
    return {
        "run_id": run.run_id,
        "job_name": run.job_name,
        "failed_at": dt.datetime.now(dt.UTC),
        "failed_steps": json.dumps(sorted(failed_steps)),
        "error": (error or "")[:4000],
        "tags": json.dumps(dict(run.tags), sort_keys=True),
    }


def record_failure(lake: LakeResource, row: dict) -> str:
    """Append one failure to ops.run_failures; its URI."""
    lake.write(FAILURES_TABLE, pa.Table.from_pylist([row], schema=FAILURES_SCHEMA))
    return lake.table_uri(FAILURES_TABLE)


def _root_cause(error) -> str:  # noqa: ANN001 - dagster's SerializableErrorInfo
    """The innermost error's message (Dagster wraps the step's exception)."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


@dg.run_failure_sensor(
    name="run_failures",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records every failed run (job, failed steps, error, tags) in ops.run_failures.",
)
def run_failure_sensor(context: dg.RunFailureSensorContext, lake: LakeResource) -> None:
    failures = context.get_step_failure_events()
    steps = [e.step_key for e in failures if e.step_key]
    # the steps' own errors say what broke; the run's message only lists the steps
    errors = [
        f"{e.step_key}: {_root_cause(e.event_specific_data.error)}"
        for e in failures
        if e.event_specific_data and e.event_specific_data.error
    ]
    error = "\n".join(errors) or context.failure_event.message
    uri = record_failure(lake, failure_row(context.dagster_run, steps, error))
    context.log.info(f"run {context.dagster_run.run_id} failed in {steps}; recorded in {uri}")
