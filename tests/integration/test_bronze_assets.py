"""The bronze assets through Dagster, on a copy of the tiny world: Dagster's own CLI loads the
code location from the environment and materialises every bronze asset, the sensor asks for a
run when the topic has new data, and maintenance compacts and vacuums."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import dagster as dg
import pytest
from deltalake import DeltaTable

from ingestion.erp import ERP_TABLES, bronze_name
from lakehouse.core.settings import Settings
from orchestration.defs.bronze.assets import bronze_clickstream
from orchestration.defs.bronze.sensors import clickstream_sensor, streaming_refresh_sensor
from orchestration.defs.maintenance.assets import bronze_table_maintenance
from orchestration.defs.resources import resources
from tests.conftest import DAGSTER, World, replace_settings, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_topic(world_copy: World) -> World:
    """The copy, reading a topic of its own (the world's topic stays as it was)."""
    settings = replace_settings(world_copy.settings, events_topic=f"bronze-{uuid.uuid4().hex[:8]}")
    return World(settings)


def test_dagster_cli_materialises_every_bronze_asset(fresh_topic: World) -> None:
    env = fresh_topic.env
    before = fresh_topic.settings.lake.open("bronze.events").count()
    run_cli("produce", "--preset", "tiny", "--events", "5000", "--malformed", "0.02", env=env)
    result = subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "orchestration.definitions"]
        + ["--select", "group:bronze"],
        env={**env, "DAGSTER_HOME": str(fresh_topic.settings.dagster_home)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lake = fresh_topic.settings.lake
    events = lake.open("bronze.events")
    assert events.count() == before + 5000
    assert lake.open("bronze.events_dead_letter").count() > 0
    for table in ERP_TABLES:
        assert lake.open(f"bronze.{bronze_name(table)}").count() > 0

    with dg.DagsterInstance.from_config(str(fresh_topic.settings.dagster_home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["bronze", "events"]))
    metadata = event.asset_materialization.metadata
    assert metadata["rows_written"].value == 5000
    assert metadata["dagster/row_count"].value == events.count()
    assert metadata["delta_version"].value == events.version()
    assert metadata["consumer_lag"].value == 0
    assert "event_id" in metadata["preview"].value


def test_sensor_requests_a_run_only_when_the_topic_has_new_data(fresh_topic: World) -> None:
    env, configured = fresh_topic.env, resources(fresh_topic.settings)
    instance = dg.DagsterInstance.ephemeral()

    def evaluate():
        with dg.build_sensor_context(instance=instance, resources=configured) as context:
            return clickstream_sensor(context)

    nothing_yet = evaluate()  # the topic does not exist until the first producer writes
    assert isinstance(nothing_yet, dg.SkipReason), nothing_yet
    assert f"topic '{fresh_topic.settings.events_topic}' does not exist" in nothing_yet.skip_message

    run_cli("produce", "--preset", "tiny", "--events", "2000", env=env)
    request = evaluate()
    assert isinstance(request, dg.RunRequest), request
    assert int(request.tags["lakehouse/lag"]) == 2000

    result = dg.materialize([bronze_clickstream], resources=configured, instance=instance)
    assert result.success
    assert isinstance(evaluate(), dg.SkipReason)

    run_cli("produce", "--preset", "tiny", "--events", "3000", "--start", "2025-09-05", env=env)
    again = evaluate()
    assert isinstance(again, dg.RunRequest) and again.run_key != request.run_key


def test_the_streaming_refresh_waits_for_the_erp_dimensions(
    fresh_topic: World, tmp_path: Path
) -> None:
    """A refresh after an ingestion is requested once silver has its customers and products
    (silver.events keeps the events of known ones); before, the sensor says what is missing."""

    @dg.asset
    def ingested() -> None:
        """Stands in for a successful ingestion run."""

    instance = dg.DagsterInstance.ephemeral()
    run = dg.materialize([ingested], instance=instance)

    def evaluate(settings: Settings) -> dg.RunRequest | dg.SkipReason:
        context = dg.build_run_status_sensor_context(
            sensor_name=streaming_refresh_sensor.name,
            dagster_instance=instance,
            dagster_run=run.dagster_run,
            dagster_event=run.get_run_success_event(),
            resources=resources(settings),
        )
        return streaming_refresh_sensor(context)

    assert isinstance(evaluate(fresh_topic.settings), dg.RunRequest)
    skip = evaluate(replace_settings(fresh_topic.settings, data_root=tmp_path / "new"))
    assert isinstance(skip, dg.SkipReason), skip
    assert "silver.customers, silver.products not built yet" in skip.skip_message
    assert "lakehouse transform" in skip.skip_message


def test_maintenance_compacts_and_vacuums_without_losing_rows(fresh_topic: World) -> None:
    configured = resources(fresh_topic.settings)
    run_cli("produce", "--preset", "tiny", "--events", "6000", env=fresh_topic.env)
    config = {"ops": {"bronze_clickstream": {"config": {"batch_max_events": 1000}}}}
    assert dg.materialize([bronze_clickstream], resources=configured, run_config=config).success

    uri = fresh_topic.settings.lake.table_uri("bronze.events")
    before = DeltaTable(uri)
    rows, files = before.count(), len(before.file_uris())
    # A file a crashed writer left behind, older than the retention window.
    orphan = Path(before.file_uris()[0]).with_name("part-orphan-from-a-crash.parquet")
    shutil.copy(before.file_uris()[0], orphan)
    two_hours_ago = orphan.stat().st_mtime - 7200
    os.utime(orphan, (two_hours_ago, two_hours_ago))

    result = dg.materialize(
        [bronze_table_maintenance],
        resources=configured,
        run_config={"ops": {"maintenance__bronze_tables": {"config": {"retention_hours": 1}}}},
    )
    assert result.success
    after = DeltaTable(uri)
    assert after.count() == rows
    assert len(after.file_uris()) < files
    assert not orphan.exists()
