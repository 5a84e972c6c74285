"""The code location loads, and its graph matches the reviewed snapshot: asset keys with their
groups, kinds, partitions and pools, asset checks, jobs, schedules and sensors. An intended
change is recorded with `UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/unit/test_definitions.py` and
shows up in review as a diff of tests/unit/snapshots/definitions.json."""

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from lakehouse.core.settings import Settings
from orchestration.definitions import build_definitions

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
defs = build_definitions(Settings())


def graph_snapshot() -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "partitions": type(node.partitions_def).__name__ if node.partitions_def else None,
            "pool": next(iter(node.pools), None) if node.pools else None,
        }
    checks = sorted(f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys)
    return {
        "assets": assets,
        "asset_checks": checks,
        "jobs": sorted(j.name for j in defs.jobs or []),
        "schedules": {s.name: s.cron_schedule for s in defs.schedules or []},
        "sensors": sorted(s.name for s in defs.sensors or []),
    }


def test_code_location_loads() -> None:
    assert isinstance(defs, dg.Definitions)
    defs.validate_loadable(defs)


def test_dagster_loads_the_definitions_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Nothing is read at import: Dagster calls `defs()`, which reads the settings then."""
    from orchestration import definitions

    monkeypatch.setenv("LAKEHOUSE_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("PARTITIONS_START_DATE", "2025-06-01")
    loaded = definitions.defs()
    assert loaded.resources["lake"].uri == str(tmp_path / "lake")
    node = loaded.resolve_asset_graph().get(dg.AssetKey(["silver", "events"]))
    assert node.partitions_def.get_first_partition_key() == "2025-06-01"


def test_graph_matches_the_reviewed_snapshot() -> None:
    current = graph_snapshot()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text()), (
        "the Dagster graph changed; if intended, rerun with UPDATE_SNAPSHOTS=1 and commit "
        "tests/unit/snapshots/definitions.json"
    )


def test_every_asset_has_a_group_an_owner_and_a_description() -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_external:
            continue
        assert node.group_name != "default", key
        assert node.owners, key
        assert node.description, key


def test_every_asset_has_a_code_version_from_its_sources() -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_materializable:
            assert node.code_version, key


def test_time_based_tables_have_daily_partitions_backfilled_in_one_run() -> None:
    """Every table partitioned by a date column in Delta is a daily-partitioned asset, so a
    date range can be backfilled from the UI; the range runs as one Spark step."""
    from spark_jobs.steps import STEPS

    graph = defs.resolve_asset_graph()
    tables = [t for step in STEPS for t in step.tables if t.partition_column]
    assert len(tables) >= 8
    for table in tables:
        node = graph.get(dg.AssetKey(table.name.split(".")))
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition), table.name
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), table.name


def test_code_versions_follow_the_module_that_builds_the_asset() -> None:
    graph = defs.resolve_asset_graph()

    def version(path: str) -> str | None:
        return graph.get(dg.AssetKey(path.split("/"))).code_version

    assert version("gold/kpi_minute") == version("gold/fact_events")  # both spark_jobs/gold.py
    assert version("silver/events") != version("gold/kpi_minute")
    assert version("silver/events") == version("silver/events_quarantine")  # one step


def test_nightly_runs_are_refreshes_filed_under_their_day() -> None:
    """Partitioned assets with partitioned parents need a partition in Dagster: the schedule's
    run is filed under its day and tagged to rebuild what changed (not a backfill of that day)."""
    import datetime as dt

    from orchestration.defs.platform.schedules import nightly_schedule
    from orchestration.lib.spark_steps import CHANGED, REFRESH_TAG

    tick = dt.datetime(2026, 3, 5, 2, 0, tzinfo=dt.UTC)
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        request = nightly_schedule(context)
    assert request.partition_key == "2026-03-05"
    assert request.tags[REFRESH_TAG] == CHANGED


def test_the_recommenders_chain_is_reported_as_one_run() -> None:
    """`lakehouse ml train` prints the chain's three reports as one: the evaluation's champion
    and windows, every step's evaluation rows and tables, the refit's version and feedback."""
    from orchestration.defs.ml.assets import recommender_report

    def report(**fields: object) -> dict:
        return {"training_report": {"evaluations": [], "tables": {}, "seconds": {}, **fields}}

    materialized = {
        "gold.model_evaluations": report(
            run_id="r1",
            champion="ranker",
            champion_version=None,
            windows={"test_start": "2025-12-15"},
            feedback={},
            evaluations=[{"model": "ranker", "split": "test"}],
            tables={"gold.model_evaluations": 10},
            seconds={"fit": 2.0},
        ),
        "gold.model_registry": report(
            run_id="r1",
            champion="ranker",
            champion_version="000002",
            windows={"data_end": "2025-12-29"},
            feedback={"clicks": {"ranker": {"ndcg@10": 0.5}}},
            evaluations=[{"model": "ranker", "split": "future"}],
            tables={"gold.model_registry": 3, "gold.model_evaluations": 4},
            seconds={"fit": 1.0},
        ),
        "gold.customer_recommendations": report(
            run_id="r1", champion="ranker", tables={"gold.customer_recommendations": 50}
        ),
        "gold.customer_scores": report(run_id="other", champion="kmeans"),
    }
    merged = recommender_report(materialized)
    assert merged["champion"] == "ranker" and merged["champion_version"] == "000002"
    assert merged["windows"] == {"test_start": "2025-12-15"}
    assert [e["split"] for e in merged["evaluations"]] == ["test", "future"]
    assert merged["tables"] == {
        "gold.model_evaluations": 14,
        "gold.model_registry": 3,
        "gold.customer_recommendations": 50,
    }
    assert merged["seconds"] == {"evaluate fit": 2.0, "refit fit": 1.0}
    assert merged["feedback"]["clicks"]["ranker"]["ndcg@10"] == 0.5
