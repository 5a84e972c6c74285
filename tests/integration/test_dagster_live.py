"""The code location on a live `dagster dev` (webserver + daemon) over a data root of its own:
the sensor launches an ingestion run after `lakehouse produce`, runs launched the way the UI
launches them (the GraphQL mutations behind the Materialize and backfill buttons) build the
lake and succeed, and the UI itself, in Chromium, shows every group, an asset's checks and
metadata, and launches a materialisation."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from lakehouse.core.settings import Settings
from orchestration.lib.spark_steps import refresh_request
from tests.conftest import cli_json, free_port, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def live(
    platform_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict, DagsterGraphQLClient]]:
    root = tmp_path_factory.mktemp("dagster-live")
    port = free_port()
    env = {
        **platform_env,
        "LAKEHOUSE_DATA_ROOT": str(root),
        "KAFKA_EVENTS_TOPIC": f"dagster-live-{uuid.uuid4().hex[:8]}",
        "DAGSTER_HOME": str(root / "dagster"),
        "DAGSTER_URL": f"http://127.0.0.1:{port}",
    }
    started = time.monotonic()
    up = cli_json("dagster", "up", env=env)["services"][0]
    print(f"\nDagster UI healthy (code location loaded) in {time.monotonic() - started:.1f}s")
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    try:
        assert up["healthy"] and up["started"]
        assert _answers(client)
        env["DAGSTER_UI"] = env["DAGSTER_URL"]
        yield env, client
    finally:
        down = cli_json("dagster", "down", env=env, check=False)["services"][0]
        assert not down["running"]


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
    lake = Settings(data_root=env["LAKEHOUSE_DATA_ROOT"]).lake
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])

    run_cli("generate", "--preset", "tiny", "--no-events", env=env)
    run_cli("produce", "--preset", "tiny", "--events", "3000", env=env)

    def sensor_run_succeeded() -> bool:
        records = instance.get_run_records(
            dg.RunsFilter(job_name="ingest_clickstream", statuses=[dg.DagsterRunStatus.SUCCESS])
        )
        return any(r.dagster_run.tags.get("dagster/sensor_name") for r in records)

    # The sensor ticks every 30 s; the run then needs a group join and a commit.
    wait_for(sensor_run_succeeded, 150, "a sensor-launched ingestion run to succeed")
    assert lake.open("bronze.events").count() == 3000

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
    assert lake.open("bronze.mv_sales").count() > 0

    # silver and gold launched like the UI does, then their checks read back as the UI reads them
    refresh = refresh_request()  # what the schedule and the sensors launch
    run_id = client.submit_job_execution(
        "refresh_silver_gold",
        tags={"dagster/partition": refresh["partition_key"], **refresh["tags"]},
    )
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

    # a date range backfilled the way the UI's "Launch backfill" does: one run for the range
    days = ["2025-09-05", "2025-09-06", "2025-09-07"]
    events = lake.open("silver.events")
    before = events.to_pyarrow_table(filters=[("event_date", "in", days)]).num_rows
    # the step writes the events, the recommendation events and their quarantine: a backfill
    # takes all three
    step = [["silver", name] for name in ("events", "recommendation_events", "events_quarantine")]
    backfill_id = launch_backfill(client, step, days)
    wait_for(
        lambda: instance.get_backfill(backfill_id).status in BACKFILL_DONE,
        600,
        "the backfill",
    )
    assert instance.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in runs
    ] == [(days[0], days[-1])]
    events.update_incremental()
    assert events.to_pyarrow_table(filters=[("event_date", "in", days)]).num_rows == before
    assert set(days) <= instance.get_materialized_partitions(dg.AssetKey(["silver", "events"]))


BACKFILL_DONE = {
    BulkActionStatus.COMPLETED_SUCCESS,
    BulkActionStatus.COMPLETED_FAILED,
    BulkActionStatus.FAILED,
    BulkActionStatus.CANCELED,
}
BACKFILL_MUTATION = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""


def launch_backfill(client: DagsterGraphQLClient, paths: list[list[str]], days: list[str]) -> str:
    """The mutation behind the UI's "Launch backfill" for these partitions of these assets."""
    params = {"assetSelection": [{"path": p} for p in paths], "partitionNames": days}
    launched = client._execute(BACKFILL_MUTATION, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


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


def test_the_ui_in_a_browser(live) -> None:
    """After the runs above: the lineage lists every group, an asset page shows its blocking
    check and its metadata, and the Materialize button launches a run that succeeds."""
    from playwright.sync_api import Locator, sync_playwright
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from warehouse.superset.browser import CHROMIUM, CHROMIUM_ARGS

    env, client = live
    ui = env["DAGSTER_UI"]
    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts" / "dagster"
    artifacts.mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)

        def dismiss_welcome() -> None:  # the community pop-up of a fresh instance
            skip = page.get_by_role("button", name="Skip")
            if skip.count():
                skip.first.click()

        def click_past_pop_ups(button: Locator, seconds: float = 90) -> None:
            """Click `button`, closing the dialogs a fresh instance opens at any moment (they
            cover the page with a backdrop that swallows clicks)."""
            deadline = time.monotonic() + seconds
            while True:
                dismiss_welcome()
                if page.locator(".bp5-overlay-backdrop").count():
                    page.keyboard.press("Escape")
                try:
                    button.click(timeout=5_000)
                    return
                except PlaywrightTimeout:
                    if time.monotonic() > deadline:
                        page.screenshot(path=str(artifacts / "click-failed.png"))
                        raise

        started = time.monotonic()
        page.goto(f"{ui}/asset-groups")
        page.get_by_text("marts", exact=True).first.wait_for()
        print(f"lineage page: {time.monotonic() - started:.1f}s")
        dismiss_welcome()
        for group in ("sources", "bronze", "silver", "gold", "ml", "marts", "bi", "maintenance"):
            assert page.get_by_text(group, exact=True).count() >= 1, group
        page.screenshot(path=str(artifacts / "lineage.png"))

        page.goto(f"{ui}/assets/silver/events")
        page.get_by_text("Row count").first.wait_for()
        dismiss_welcome()
        assert page.get_by_text("data-engineering").count() >= 1  # owner
        page.goto(f"{ui}/assets/silver/events?view=checks")
        page.get_by_text("great_expectations").first.wait_for()
        assert page.get_by_text("Blocking").count() >= 1
        page.screenshot(path=str(artifacts / "asset-checks.png"))

        brand = dg.AssetKey(["bronze", "mv_brand"])

        def brand_runs(status: dg.DagsterRunStatus | None = None) -> set[str]:
            return {
                r.dagster_run.run_id
                for r in instance.get_run_records()
                if brand in (r.dagster_run.asset_selection or set())
                and (status is None or r.dagster_run.status == status)
            }

        before = brand_runs()
        page.goto(f"{ui}/assets/bronze/mv_brand")
        click_past_pop_ups(page.get_by_role("button", name="Materialize").first)
        wait_for(
            lambda: brand_runs(dg.DagsterRunStatus.SUCCESS) - before,
            180,
            "the run launched from the Materialize button to succeed",
        )
        browser.close()
