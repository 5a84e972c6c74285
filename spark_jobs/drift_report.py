"""The daily drift report (ml/drift.py): each monitored model's inputs and scores on the newest
data against the data it was trained on, appended to `gold.model_drift`.

- `purchase_intent`: the sessions of the newest `INTENT_DAYS` complete days of
  `gold.fact_events` (today's, still filling, would skew the hour and the session lengths; and
  a whole week, because one day is all weekend or all weekday), cut into prefixes as the model
  was trained, and their predicted probabilities;
- `customer_churn`, `customer_propensity`: the customer snapshot scored today (the newest
  cutoff of `gold.customer_features`) and its probabilities.

Each against the reference profile saved with the model in the registry at training. A model
without one (trained before drift monitoring) or without current data is reported as skipped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.core.lake import Lake
from ml.drift import drift
from ml.registry import ModelRegistry
from spark_jobs.incremental import partition_row_counts
from spark_jobs.intent_training import COLUMNS, MODEL_NAME, session_features
from spark_jobs.session_training import EVENTS, product_events
from spark_jobs.training import Tables, registry

REPORT = "gold.model_drift"
CUSTOMER_FEATURES = "gold.customer_features"
CUSTOMER_MODELS = ("customer_churn", "customer_propensity")
SCORE = "score"  # the model's output, profiled beside its inputs
INTENT_DAYS = 7

SCHEMA = pa.schema(
    [
        ("checked_at", pa.timestamp("us", tz="UTC")),
        ("model", pa.string()),
        ("model_version", pa.string()),
        ("data_window", pa.string()),
        ("feature", pa.string()),
        ("is_score", pa.bool_()),
        ("psi", pa.float64()),
        ("status", pa.string()),
        ("reference_rows", pa.int64()),
        ("current_rows", pa.int64()),
    ]
)


@dataclass
class DriftReport:
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # model -> why

    def worst(self, scores_only: bool) -> list[dict[str, Any]]:
        """Rows by PSI, largest first (the scores only, or every input)."""
        rows = [r for r in self.rows if r["is_score"] == scores_only]
        return sorted(rows, key=lambda r: -r["psi"])


def newest_complete_day(tables: Tables, today: dt.date) -> dt.date | None:
    """The newest day with events before `today` (UTC): today's is still filling. From the
    Delta log's partitions and file statistics: no event is read."""
    tables.require(EVENTS)
    rows = partition_row_counts(tables.uri(EVENTS), tables.lake.storage_options)
    return max((day for day, n in rows.items() if n and day < today), default=None)


def _intent_now(tables: Tables, models: ModelRegistry, today: dt.date) -> tuple[pd.DataFrame, str]:
    day = newest_complete_day(tables, today)
    if day is None:
        return pd.DataFrame(), "no complete day of events"
    first = day - dt.timedelta(days=INTENT_DAYS - 1)
    window = f"{first} .. {day}"
    events = product_events(tables, since=first, until=day, columns=COLUMNS)
    if events.empty:
        return pd.DataFrame(), f"no product events in {window}"
    sessions = session_features(tables, events)
    booster = models.load(MODEL_NAME)
    # the model's own inputs: one trained before a feature was added scores without it
    return sessions.assign(**{SCORE: booster.predict(sessions[booster.feature_name()])}), window


def _customers_now(tables: Tables, models: ModelRegistry, name: str) -> tuple[pd.DataFrame, str]:
    snapshots = tables.require(CUSTOMER_FEATURES)
    cutoffs = snapshots.to_pyarrow_dataset().to_table(columns=["cutoff_date"])["cutoff_date"]
    newest = pc.max(cutoffs).as_py()
    scoring = snapshots.to_pyarrow_table(filters=[("cutoff_date", "=", newest)]).to_pandas()
    result = models.load(name)
    return scoring.assign(**{SCORE: result.predict_proba(scoring)}), f"snapshot {newest:%Y-%m-%d}"


def drift_report(
    lake: Lake, today: dt.date | None = None, progress: Callable[[str], None] = lambda _: None
) -> DriftReport:
    """Measure every monitored model and append the rows to gold.model_drift."""
    tables, models = Tables(lake), registry(lake)
    today = today or dt.datetime.now(dt.UTC).date()
    report = DriftReport()
    checked_at = dt.datetime.now(dt.UTC)
    current: dict[str, Callable[[], tuple[pd.DataFrame, str]]] = {
        MODEL_NAME: lambda: _intent_now(tables, models, today),
        **{name: (lambda n=name: _customers_now(tables, models, n)) for name in CUSTOMER_MODELS},
    }
    for name, load in current.items():
        if name not in models.models():
            report.skipped[name] = "not trained yet"
            continue
        record = models.get(name)
        profile = record.extra.get("reference_profile")
        if not profile:
            report.skipped[name] = f"version {record.version} has no reference profile: retrain it"
            continue
        frame, window = load()
        if frame.empty:
            report.skipped[name] = window
            continue
        for row in drift(profile, frame):
            report.rows.append(
                {
                    "checked_at": checked_at,
                    "model": name,
                    "model_version": record.version,
                    "data_window": window,
                    "is_score": row["feature"] == SCORE,
                    **row,
                }
            )
        worst = max((r for r in report.rows if r["model"] == name), key=lambda r: r["psi"])
        progress(f"{name} on {window}: largest PSI {worst['psi']:.3f} ({worst['feature']})")
    if report.rows:
        lake.write(REPORT, pa.Table.from_pylist(report.rows, SCHEMA), mode="append")
    return report
