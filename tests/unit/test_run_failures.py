"""A failed run is recorded in ops.run_failures with its job, failed step and error."""

import json
from pathlib import Path

import dagster as dg
from deltalake import DeltaTable

from orchestration.defs.platform.sensors import run_failure_sensor
from orchestration.defs.resources import LakeResource


@dg.op
def produce_to_kafka() -> None:
    raise ConnectionError("broker 127.0.0.1:1 unreachable")


@dg.job
def failing_ingest() -> None:
    produce_to_kafka()


def test_a_failed_run_is_recorded_with_its_step_and_error(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = failing_ingest.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failures",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=failure,
    ).for_run_failure()

    run_failure_sensor(context, lake=LakeResource(uri=str(tmp_path / "lake")))

    rows = DeltaTable(str(tmp_path / "lake" / "ops" / "run_failures")).to_pyarrow_table()
    assert rows.num_rows == 1
    row = rows.to_pylist()[0]
    assert row["run_id"] == result.run_id and row["job_name"] == "failing_ingest"
    assert json.loads(row["failed_steps"]) == ["produce_to_kafka"]
    assert "broker 127.0.0.1:1 unreachable" in row["error"]
    assert json.loads(row["tags"]) == dict(result.dagster_run.tags)
