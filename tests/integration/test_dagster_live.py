"""The code location on a live `dagster dev` (webserver + daemon): the sensor launches an
ingestion run after `lakehouse produce`, and a run launched the way the UI launches it (the
GraphQL launchRun mutation behind the Materialize button) succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
from deltalake import DeltaTable

from lakehouse.settings import Settings
from tests.conftest import free_port, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAGSTER = str(Path(sys.executable).parent / "dagster")


@pytest.fixture
def live(
    platform_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[dict, DagsterGraphQLClient]]:
    env = {
        **platform_env,
        "LAKEHOUSE_DATA_ROOT": str(tmp_path),
        "KAFKA_EVENTS_TOPIC": f"dagster-live-{tmp_path.name}",
        "DAGSTER_HOME": str(tmp_path / "dagster"),
    }
    (tmp_path / "dagster").mkdir()
    # Create the instance's storage once: the webserver, daemon and code server of a first
    # `dagster dev` would otherwise race to stamp the same fresh SQLite schema.
    subprocess.run([DAGSTER, "instance", "migrate"], env=env, check=True, capture_output=True)
    port = free_port()
    log = (tmp_path / "dagster-dev.log").open("w")
    # Started from a script, dagster dev ignores SIGTERM unless its default handler is restored.
    proc = subprocess.Popen(
        ["env", "--default-signal=INT,TERM", DAGSTER, "dev", "-m", "orchestration.definitions"]
        + ["-h", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    try:
        wait_for(lambda: _answers(client), 120, "the Dagster webserver to answer")
        yield env, client
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _answers(client: DagsterGraphQLClient) -> bool:
    try:
        client.get_run_status("00000000-0000-0000-0000-000000000000")
    except DagsterGraphQLClientError as exc:
        return "RunNotFound" in str(exc) or "not found" in str(exc).lower()
    except Exception:  # noqa: BLE001 - connection refused while it starts
        return False
    return True


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_sensor_and_ui_launched_runs(live) -> None:
    env, client = live
    settings = Settings(data_root=env["LAKEHOUSE_DATA_ROOT"])
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])

    run_cli("produce", "--preset", "tiny", "--events", "3000", env=env)

    def sensor_run_succeeded() -> bool:
        records = instance.get_run_records(
            dg.RunsFilter(job_name="ingest_clickstream", statuses=[dg.DagsterRunStatus.SUCCESS])
        )
        return any(r.dagster_run.tags.get("dagster/sensor_name") for r in records)

    # The sensor ticks every 30 s; the run then needs a group join and a commit.
    wait_for(sensor_run_succeeded, 150, "a sensor-launched ingestion run to succeed")
    assert DeltaTable(settings.table_uri("bronze", "events")).count() == 3000

    run_cli("generate", "--preset", "tiny", "--no-events", env=env)
    run_id = client.submit_job_execution("extract_erp")
    wait_for(
        lambda: (
            client.get_run_status(run_id)
            in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
        ),
        120,
        "the launched extraction run",
    )
    assert client.get_run_status(run_id) == dg.DagsterRunStatus.SUCCESS
    assert DeltaTable(settings.table_uri("bronze", "mv_sales")).count() > 0

    # silver and gold launched like the UI does, then their checks read back as the UI reads them
    run_cli("extract", env=env)
    run_id = client.submit_job_execution("refresh_silver_gold")
    wait_for(
        lambda: (
            client.get_run_status(run_id)
            in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
        ),
        600,
        "the launched silver/gold run",
    )
    assert client.get_run_status(run_id) == dg.DagsterRunStatus.SUCCESS
    for path in (["silver", "events"], ["silver", "sales_lines"], ["gold", "fact_events"]):
        assert asset_checks(client, path) == {"great_expectations": ("SUCCEEDED", True)}, path


CHECKS_QUERY = """
query Checks($key: AssetKeyInput!) {
  assetNodes(assetKeys: [$key]) {
    assetChecksOrError {
      ... on AssetChecks {
        checks { name blocking executionForLatestMaterialization { status } }
      }
    }
  }
}
"""


def asset_checks(client: DagsterGraphQLClient, path: list[str]) -> dict[str, tuple[str, bool]]:
    """An asset's checks as the asset page shows them: name → (latest status, blocking)."""
    nodes = client._execute(CHECKS_QUERY, {"key": {"path": path}})["assetNodes"]
    checks = nodes[0]["assetChecksOrError"]["checks"]
    return {
        c["name"]: (c["executionForLatestMaterialization"]["status"], c["blocking"]) for c in checks
    }
