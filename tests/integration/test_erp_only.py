"""A retailer that loads its ERP before any clickstream: silver, gold, the recommenders (on
purchases alone) and the marts all build, with empty event tables and a note saying why."""

from __future__ import annotations

import shutil

import pytest

from serving.snapshot import load_snapshot
from tests.conftest import World, cli_json, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def erp_only(world: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The tiny world without its clickstream: bronze events gone, silver and gold unbuilt."""
    copy = world.copy(tmp_path_factory.mktemp("erp-only") / "root")
    lake = copy.root / "lake"
    for path in (
        "silver",
        "gold",
        "_state",
        "_staging",
        "bronze/events",
        "bronze/events_dead_letter",
    ):
        shutil.rmtree(lake / path, ignore_errors=True)
    return copy


def test_silver_gold_models_and_marts_build_without_a_clickstream(
    erp_only: World, world: World
) -> None:
    built = run_cli("transform", env=erp_only.env)
    assert "note silver.events: no clickstream yet" in built.stdout
    for table in ("silver.events", "gold.fact_events", "gold.fact_sessions", "gold.kpi_minute"):
        assert erp_only.table(table).num_rows == 0, table
    lines = erp_only.table("gold.fact_sales_line").num_rows
    assert lines == world.table("gold.fact_sales_line").num_rows > 0
    weights = erp_only.table("gold.customer_product_interactions").column("weight").to_pylist()
    assert min(weights) > 0  # purchases alone, decayed from the newest sale (not from today)

    report = cli_json("ml", "train", env=erp_only.env)
    assert report["recommenders"]["champion"] is not None
    assert erp_only.table("gold.customer_recommendations").num_rows > 0
    assert load_snapshot(erp_only.settings.lake).lists.keys.size > 0  # the API's snapshot

    marts = run_cli("marts", "build", env=erp_only.env)
    assert marts.returncode == 0
    # a second transform finds nothing new and keeps the empty tables as they are
    again = run_cli("transform", env=erp_only.env)
    assert "no clickstream yet" not in again.stdout
