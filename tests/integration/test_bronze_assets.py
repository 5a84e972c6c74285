"""The bronze assets through Dagster: the CLI materialises them, the sensor asks for a run when
the topic has new data, and maintenance compacts and vacuums."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from deltalake import DeltaTable

from lakehouse.erp_extract import ERP_TABLES, bronze_name
from lakehouse.settings import Settings
from orchestration.defs.bronze.assets import bronze_clickstream
from orchestration.defs.bronze.sensors import clickstream_sensor
from orchestration.defs.maintenance.assets import bronze_table_maintenance
from orchestration.defs.resources import default_resources
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

DAGSTER = str(Path(sys.executable).parent / "dagster")


@pytest.fixture
def env(platform_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The shared services; a data root (lake, ERP database, Dagster home) and topic of its own."""
    (tmp_path / "dagster").mkdir()
    return {
        **platform_env,
        "LAKEHOUSE_DATA_ROOT": str(tmp_path),
        "KAFKA_EVENTS_TOPIC": f"bronze-assets-{tmp_path.name}",
        "DAGSTER_HOME": str(tmp_path / "dagster"),
    }


def settings_for(env: dict[str, str]) -> Settings:
    return Settings(
        data_root=env["LAKEHOUSE_DATA_ROOT"],
        kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        events_topic=env["KAFKA_EVENTS_TOPIC"],
    )


def test_dagster_cli_materialises_every_bronze_asset(env: dict[str, str], tmp_path: Path):
    run_cli("generate", "--preset", "tiny", "--no-events", env=env)
    run_cli("produce", "--preset", "tiny", "--events", "5000", "--malformed", "0.02", env=env)
    result = subprocess.run(
        [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "orchestration.definitions",
            "--select",
            "group:bronze",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    settings = settings_for(env)
    events = DeltaTable(settings.table_uri("bronze", "events"))
    assert events.count() == 5000
    assert DeltaTable(settings.table_uri("bronze", "events_dead_letter")).count() > 0
    for table in ERP_TABLES:
        assert DeltaTable(settings.table_uri("bronze", bronze_name(table))).count() > 0

    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    event = instance.get_latest_materialization_event(dg.AssetKey(["bronze", "events"]))
    metadata = event.asset_materialization.metadata
    assert metadata["dagster/row_count"].value == 5000
    assert metadata["delta_version"].value == events.version()
    assert metadata["consumer_lag"].value == 0
    assert "event_id" in metadata["preview"].value


def test_sensor_requests_a_run_only_when_the_topic_has_new_data(env: dict[str, str]) -> None:
    settings = settings_for(env)
    resources = default_resources(settings)
    instance = dg.DagsterInstance.ephemeral()

    def evaluate():
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            return clickstream_sensor(context)

    run_cli("produce", "--preset", "tiny", "--events", "2000", env=env)
    request = evaluate()
    assert isinstance(request, dg.RunRequest), request
    assert int(request.tags["lakehouse/lag"]) == 2000

    result = dg.materialize([bronze_clickstream], resources=resources, instance=instance)
    assert result.success
    assert isinstance(evaluate(), dg.SkipReason)

    run_cli("produce", "--preset", "tiny", "--events", "3000", "--start", "2025-09-05", env=env)
    again = evaluate()
    assert isinstance(again, dg.RunRequest) and again.run_key != request.run_key


def test_maintenance_compacts_and_vacuums_without_losing_rows(env: dict[str, str]) -> None:
    settings = settings_for(env)
    resources = default_resources(settings)
    run_cli("produce", "--preset", "tiny", "--events", "6000", env=env)
    config = {"ops": {"bronze_clickstream": {"config": {"batch_max_events": 1000}}}}
    assert dg.materialize([bronze_clickstream], resources=resources, run_config=config).success

    uri = settings.table_uri("bronze", "events")
    before = DeltaTable(uri)
    rows, files = before.count(), len(before.file_uris())
    # A file a crashed writer left behind, older than the retention window.
    orphan = Path(before.file_uris()[0]).with_name("part-orphan-from-a-crash.parquet")
    shutil.copy(before.file_uris()[0], orphan)
    two_hours_ago = orphan.stat().st_mtime - 7200
    os.utime(orphan, (two_hours_ago, two_hours_ago))

    result = dg.materialize(
        [bronze_table_maintenance],
        resources=resources,
        run_config={"ops": {"maintenance__bronze_tables": {"config": {"retention_hours": 1}}}},
    )
    assert result.success
    after = DeltaTable(uri)
    assert after.count() == rows
    assert len(after.file_uris()) < files
    assert not orphan.exists()
