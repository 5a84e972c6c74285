"""The experiments' results and decisions from a hand-written gold.recommendation_exposures
(spark_jobs/experiment_results.py): per-unit aggregation in DuckDB, the per-day statistics, a
promotion recorded once in the registry and the history, and the snapshot's serving policy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from lakehouse.core.lake import Lake
from ml.experiments import DECISION_MODEL, decisions, serving_policy
from spark_jobs.experiment_results import HISTORY, RESULTS, experiment_results
from spark_jobs.training import registry

SPEC = """name: {name}
variants:
  - {{name: popular, weight: 0.5, recommender: popularity}}
  - {{name: ranked, weight: 0.5, recommender: champion, session_share: 0.3}}
control: popular
unit: session
primary_metric: conversion
guardrails: [revenue_per_unit]
minimum_sample: 1000
start: 2026-11-30T00:00:00Z
"""
DAYS = [dt.date(2026, 11, 30), dt.date(2026, 12, 1)]


def exposures(name: str, units: dict[str, int], conversion: dict[str, float]) -> pa.Table:
    """Each unit (session) shown two lists of two products on one of the days; a converting
    unit bought its first product."""
    rng = np.random.default_rng(3)
    rows = []
    for variant, count in units.items():
        for n in range(count):
            session, day = f"{variant}-{n}", DAYS[n % 2]
            bought = bool(rng.random() < conversion[variant])
            for request in (f"{session}-a", f"{session}-b"):
                for position in (1, 2):
                    hit = bought and request.endswith("a") and position == 1
                    rows.append(
                        {"event_date": day, "request_id": request, "session_id": session,
                         "customer_id": None, "experiment": name, "variant": variant,
                         "position": position, "product_id": position, "clicked": hit,
                         "carted": hit, "purchased": hit, "revenue": 100.0 if hit else 0.0}
                    )  # fmt: skip
    return pa.Table.from_pylist(rows)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.at(str(tmp_path / "lake"))


def declared(lake: Lake, tmp_path: Path, name: str, units: dict, conversion: dict) -> Path:
    """The experiment declared in a folder of its own, with its exposures in the lake."""
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / f"{name}.yaml").write_text(SPEC.format(name=name))
    lake.write(
        "gold.recommendation_exposures", exposures(name, units, conversion), mode="overwrite"
    )
    return folder


def test_a_true_lift_is_promoted_once_and_becomes_the_serving_policy(
    lake: Lake, tmp_path: Path
) -> None:
    units = {"popular": 3000, "ranked": 3000}
    folder = declared(lake, tmp_path, "lift", units, {"popular": 0.05, "ranked": 0.09})
    report = experiment_results(lake, folder)
    summary = report.experiments["lift"]
    assert summary["status"] == "promote" and summary["units"] == {"popular": 3000, "ranked": 3000}
    assert summary["units_in_several_variants"] == 0
    assert [d["winner"] for d in report.decided] == ["ranked"]

    results = lake.open(RESULTS).to_pyarrow_table().to_pylist()
    assert {(r["day"], r["variant"]) for r in results} == {
        (d, v) for d in DAYS for v in ("popular", "ranked")
    }
    last = {r["variant"]: r for r in results if r["day"] == DAYS[-1]}
    assert last["ranked"]["exposures"] == 6000  # two requests per unit
    assert last["ranked"]["conversion"] > last["popular"]["conversion"]
    # the always-valid p-value decides; it asks for more evidence than the fixed-horizon one
    assert last["ranked"]["p_value"] < last["ranked"]["always_valid_p"] < 0.05
    assert last["ranked"]["ci_low"] > 0 and last["popular"]["difference"] is None
    first = {r["variant"]: r for r in results if r["day"] == DAYS[0]}
    assert first["ranked"]["units"] == 1500  # the units so far, on the first day

    models = registry(lake)
    decided = decisions(models)
    policy = serving_policy(decided)
    assert policy["recommender"] == "champion" and policy["session_share"] == 0.3
    # evaluated again: the decision stands, recorded once
    assert experiment_results(lake, folder).decided == []
    assert len(models.versions(DECISION_MODEL)) == 1
    history = lake.open(HISTORY).to_pyarrow_table().to_pylist()
    assert [(h["experiment"], h["status"], h["winner"]) for h in history] == [
        ("lift", "promote", "ranked")
    ]


def test_a_skewed_split_stops_the_experiment(lake: Lake, tmp_path: Path) -> None:
    units = {"popular": 1650, "ranked": 1350}
    folder = declared(lake, tmp_path, "skew", units, {"popular": 0.05, "ranked": 0.05})
    report = experiment_results(lake, folder)
    assert report.experiments["skew"]["status"] == "stopped"
    assert "sample ratio mismatch" in report.experiments["skew"]["reason"]
    assert serving_policy(decisions(registry(lake))) is None  # stopped: nobody promoted


def test_the_sensor_evaluates_a_running_experiment_when_new_exposures_arrive(
    lake: Lake, tmp_path: Path
) -> None:
    import dagster as dg

    from orchestration.defs.experiments.resources import ExperimentsResource
    from orchestration.defs.experiments.sensors import experiment_sensor
    from orchestration.defs.resources import LakeResource

    folder = tmp_path / "experiments"
    folder.mkdir()
    resources = {
        "lake": LakeResource(uri=lake.uri),
        "experiments": ExperimentsResource(folder=str(folder), check_seconds=10),
    }

    def evaluate(cursor: str | None = None):
        with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
            return experiment_sensor(context), context.cursor

    assert "no experiment is running" in evaluate()[0].skip_message
    (folder / "lift.yaml").write_text(SPEC.format(name="lift"))
    assert "nothing was shown yet" in evaluate()[0].skip_message

    table = exposures("lift", {"popular": 10, "ranked": 10}, {"popular": 0.5, "ranked": 0.5})
    lake.write("gold.recommendation_exposures", table, mode="overwrite")
    result, _ = evaluate()
    [request] = result.run_requests
    assert request.run_key == "lift:0" and request.tags["lakehouse/experiment"] == "lift"
    cursor = result.cursor
    assert "no new exposures" in evaluate(cursor)[0].skip_message
    lake.write("gold.recommendation_exposures", table, mode="append")
    assert "evaluated" in evaluate(cursor)[0].skip_message  # new ones, but checked < 10 s ago
    assert evaluate("0:0")[0].run_requests[0].run_key == "lift:1"
