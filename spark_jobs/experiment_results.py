"""The A/B experiments' results and decisions, from `gold.recommendation_exposures`.

For every experiment of `experiments/*.yaml` with exposures: each unit (session or customer, as
the spec says) is aggregated once in DuckDB over the Delta table's Arrow dataset (streamed, never
the whole table in memory): its variant, the day it was first exposed, whether it clicked,
carted and bought a recommended product, and the revenue credited to what it was shown. The
statistics of ml/experiments.py then give, per day, every variant's metrics and the decision
(`gold.experiment_results`, rewritten whole: it is small).

A decision that ends an experiment (a variant promoted, or the experiment stopped by a sample
ratio mismatch) is recorded once, as a version of `experiment_decision` in the model registry
(what the serving snapshot hands the API: it stops serving the experiment and, after a
promotion, serves the winner to everyone) and as the registry's `gold.experiment_history`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from lakehouse.core.lake import Lake
from ml.experiments import (
    DECISION_MODEL,
    ExperimentSpec,
    UnitTotals,
    decisions,
    load_experiments,
    results_by_day,
)
from ml.registry import ModelRegistry
from spark_jobs.training import Tables, registry

EXPOSURES = "gold.recommendation_exposures"
RESULTS = "gold.experiment_results"
HISTORY = "gold.experiment_history"
FINAL = ("promote", "stopped")


@dataclass
class ExperimentsReport:
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> latest
    decided: list[dict[str, Any]] = field(default_factory=list)  # recorded by this run
    rows: int = 0
    inputs: dict[str, int] = field(default_factory=dict)


def unit_totals(tables: Tables, spec: ExperimentSpec) -> tuple[list[UnitTotals], int]:
    """The experiment's per-day unit totals, and how many units saw more than one variant (a
    broken assignment, reported)."""
    unit = "session_id" if spec.unit == "session" else "CAST(customer_id AS VARCHAR)"
    with duckdb.connect() as con:
        con.register("exposures", tables.require(EXPOSURES).to_pyarrow_dataset())
        con.execute(
            f"""
            CREATE TEMP TABLE units AS
            SELECT variant, {unit} AS unit, min(event_date) AS day,
                   count(DISTINCT request_id) AS exposures,
                   bool_or(clicked)::INT AS clicked, bool_or(carted)::INT AS carted,
                   bool_or(purchased)::INT AS converted, sum(revenue)::DOUBLE AS revenue
            FROM exposures
            WHERE experiment = ? AND {unit} IS NOT NULL AND variant IS NOT NULL
            GROUP BY ALL
            """,
            [spec.name],
        )
        rows = con.execute(
            """
            SELECT variant, day, count(*), sum(exposures), sum(clicked), sum(carted),
                   sum(converted), sum(revenue), sum(revenue * revenue)
            FROM units GROUP BY ALL ORDER BY day, variant
            """
        ).fetchall()
        crossed = con.execute(
            "SELECT count(*) FROM (SELECT unit FROM units GROUP BY unit HAVING count(*) > 1)"
        ).fetchone()[0]
    totals = [
        UnitTotals(v, d, int(n), int(e), int(c), int(a), int(b), float(r), float(r2))
        for v, d, n, e, c, a, b, r, r2 in rows
    ]
    return totals, int(crossed)


def history(models: ModelRegistry) -> pa.Table:
    """gold.experiment_history: one row per decided experiment, oldest first."""
    versions = models.versions(DECISION_MODEL) if DECISION_MODEL in models.models() else []
    rows = [
        {
            **v.params,
            "registry_version": v.version,
            "metrics": json.dumps(v.metrics, sort_keys=True),
        }
        for v in versions
    ]
    return pa.Table.from_pylist(
        [{name: row.get(name) for name in HISTORY_SCHEMA.names} for row in rows], HISTORY_SCHEMA
    )


def _record(
    models: ModelRegistry, spec: ExperimentSpec, latest: Sequence[dict], inputs: dict[str, int]
) -> dict[str, Any]:
    first = latest[0]
    winner = next((v for v in spec.variants if v.name == first["winner"]), None)
    decision = {
        "experiment": spec.name,
        "decided_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "day": str(first["day"]),
        "status": first["status"],
        "winner": first["winner"],
        "recommender": winner.recommender if winner else None,
        "session_share": winner.session_share if winner else None,
        "reason": first["reason"],
    }
    metrics = {
        row["variant"]: {
            "units": row["units"],
            spec.primary_metric: row[spec.primary_metric],
            "always_valid_p": row["always_valid_p"],
        }
        for row in latest
    }
    models.save(DECISION_MODEL, decision, params=decision, metrics=metrics, inputs=inputs)
    return decision


def experiment_results(
    lake: Lake, experiments_dir: Path, progress: Callable[[str], None] = lambda _: None
) -> ExperimentsReport:
    """Results of every declared experiment with exposures; record the ones that concluded."""
    tables = Tables(lake)
    report = ExperimentsReport(inputs=tables.versions(EXPOSURES))
    specs = load_experiments(experiments_dir) if experiments_dir.is_dir() else []
    if lake.open(EXPOSURES) is None:  # nothing was ever shown: empty results, for the marts
        progress(f"no experiment results: {EXPOSURES} does not exist yet")
        specs = []
    models = registry(lake)
    decided = decisions(models)
    rows: list[dict] = []
    for spec in specs:
        totals, crossed = unit_totals(tables, spec)
        if not totals:
            continue
        found = results_by_day(spec, totals)
        latest = [r for r in found if r["day"] == found[-1]["day"]]
        summary = {
            "status": latest[0]["status"],
            "reason": latest[0]["reason"],
            "units": {r["variant"]: r["units"] for r in latest},
            "units_in_several_variants": crossed,
            "day": str(latest[0]["day"]),
            "variants": [{**r, "day": str(r["day"])} for r in latest],
        }
        if spec.name in decided:
            summary["decided"] = decided[spec.name]
        elif latest[0]["status"] in FINAL:
            summary["decided"] = _record(models, spec, latest, report.inputs)
            report.decided.append(summary["decided"])
        progress(f"experiment {spec.name}: {summary['status']}: {summary['reason']}")
        report.experiments[spec.name] = summary
        rows += [{**r, "units_in_several_variants": crossed} for r in found]
    computed_at = dt.datetime.now(dt.UTC)
    results = pa.Table.from_pylist(
        [{**r, "computed_at": computed_at} for r in rows], RESULTS_SCHEMA
    )
    report.rows = tables.write(RESULTS, results)
    tables.write(HISTORY, history(models))
    return report


RESULTS_SCHEMA = pa.schema(
    [
        ("experiment", pa.string()), ("day", pa.date32()), ("variant", pa.string()),
        ("is_control", pa.bool_()), ("weight", pa.float64()), ("units", pa.int64()),
        ("exposures", pa.int64()), ("ctr", pa.float64()), ("add_to_cart_rate", pa.float64()),
        ("conversion", pa.float64()), ("revenue_per_unit", pa.float64()),
        ("primary_metric", pa.string()), ("alpha", pa.float64()),
        ("difference", pa.float64()), ("ci_low", pa.float64()),
        ("ci_high", pa.float64()), ("p_value", pa.float64()), ("always_valid_p", pa.float64()),
        ("srm_p", pa.float64()), ("units_in_several_variants", pa.int64()),
        ("status", pa.string()), ("winner", pa.string()),
        ("reason", pa.string()), ("computed_at", pa.timestamp("us", tz="UTC")),
    ]
)  # fmt: skip
HISTORY_SCHEMA = pa.schema(
    [
        ("experiment", pa.string()), ("decided_at", pa.string()), ("status", pa.string()),
        ("winner", pa.string()), ("recommender", pa.string()), ("session_share", pa.float64()),
        ("reason", pa.string()), ("registry_version", pa.string()), ("metrics", pa.string()),
    ]
)  # fmt: skip
