"""An A/B experiment end to end on a copy of the tiny world: simulated shoppers through the real
API (which serves each session its variant and records impressions), their clicks, carts and
purchases through Kafka, bronze, silver and gold, then the experiment's results computed
through Dagster (`lakehouse ml experiments --evaluate`)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path

import pytest
from deltalake import DeltaTable

from lakehouse.devstack.services import ServiceManager, define_services
from tests.conftest import World, cli_json, free_port, ingest_everything, replace_settings

pytestmark = pytest.mark.integration

SPEC = """name: shoppers
variants:
  - {{name: popular, weight: 0.5, recommender: popularity}}
  - {{name: ranked, weight: 0.5, recommender: champion}}
control: popular
unit: session
primary_metric: conversion
guardrails: [revenue_per_unit]
minimum_sample: 5000
start: {start}
"""


def test_simulated_shoppers_run_an_experiment_through_the_lakehouse_to_its_results(
    world_copy: World, tmp_path: Path
) -> None:
    folder = tmp_path / "experiments"
    folder.mkdir()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    (folder / "shoppers.yaml").write_text(SPEC.format(start=start.isoformat()))
    settings = replace_settings(
        world_copy.settings,
        events_topic=f"shoppers-{uuid.uuid4().hex[:8]}",
        api_url=f"http://127.0.0.1:{free_port()}",
        experiments_dir=folder,
    )
    world = World(settings)
    env = {**world.env, "API_URL": settings.api_url, "EXPERIMENTS_DIR": str(folder)}
    api = ServiceManager(settings, [s for s in define_services(settings) if s.name == "api"])
    api.up(include=("api",))
    try:
        traffic = cli_json("simulate-traffic", "--sessions", "150", "--rate", "50", env=env)
    finally:
        api.down()  # the API flushes the impressions it produced as it stops
    assert traffic["failed_sessions"] == 0, traffic["errors"]
    variants = traffic["variants"]
    assert set(variants) == {"shoppers/popular", "shoppers/ranked"}
    assert sum(v["clicks"] for v in variants.values()) > 0

    posted = sum(v["clicks"] * 2 + v["carts"] + v["purchases"] for v in variants.values())
    pages = sum(v["pages"] for v in variants.values())
    assert ingest_everything(world, posted + pages) == posted + pages  # nothing lost
    cli_json("transform", env=env)
    report = cli_json("ml", "experiments", "--evaluate", env=env)["shoppers"]

    found = {row["variant"]: row for row in report["variants"]}
    for name in ("popular", "ranked"):
        simulated = variants[f"shoppers/{name}"]
        assert found[name]["units"] == simulated["sessions"]
        assert found[name]["exposures"] == simulated["pages"]
        assert found[name]["ctr"] == pytest.approx(simulated["clicked"] / simulated["sessions"])
        assert found[name]["conversion"] == pytest.approx(
            simulated["converted"] / simulated["sessions"]
        )
    assert report["status"] == "running"
    assert report["reason"].startswith("waiting for the minimum sample")
    assert report["units_in_several_variants"] == 0
    assert found["ranked"]["always_valid_p"] >= found["ranked"]["p_value"]

    # the answers become the ranker's feedback: the pages somebody acted on, read from Delta
    from spark_jobs.training import Tables, load_feedback

    rows = load_feedback(Tables(settings.lake))
    assert rows is not None
    clicks = sum(v["clicks"] for v in variants.values())
    acted_on = rows.groupby("request_id")["label"].max()
    assert clicks <= len(acted_on) <= pages and (acted_on > 0).all()
    assert rows["position"].between(1, 10).all() and rows["customer_id"].notna().all()

    # and the nightly ranker learns from them, scored on the latest quarter held out
    started = time.monotonic()
    trained = cli_json("ml", "train", "--part", "recommenders", env=env)["recommenders"]
    by_model = trained["feedback"]["clicks"]
    assert set(by_model) == {"served", "ranker", "ranker_feedback_debiased"}
    held = by_model["served"]["answers"]
    assert held + by_model["served"]["training_answers"] == len(acted_on)
    assert all(0 < m["ndcg@10"] <= 1 for m in by_model.values())
    stored = DeltaTable(settings.lake.table_uri("gold.model_evaluations")).to_pandas()
    mine = stored[(stored["run_id"] == trained["run_id"])]
    feedback_rows = mine[mine["task"] == "recommendation_feedback"]
    assert set(feedback_rows["model"]) == set(by_model) and not feedback_rows["is_champion"].any()
    print(f"ml train with feedback on the tiny world: {time.monotonic() - started:.0f} s")
