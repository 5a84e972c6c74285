"""What the training runners share: reading and writing gold with delta-rs, the windows of a
time split, the model registry under the lake, and the long rows of gold.model_evaluations.

The runners, each one Dagster asset (or a chain of them) of the `ml` group, `lakehouse ml train`
materialises them: the recommenders (spark_jobs.recommender_training), the customer models
(spark_jobs.customer_training), the session models (spark_jobs.session_training) and purchase
intent (spark_jobs.intent_training).

Windows adapt to short histories (the demo has 120 days): the churn window is at most a
quarter of the history, the propensity window at most half the churn window, the test window at
most a fifth (twice: validation, then test); the windows used are recorded with every
evaluation row.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from lakehouse.core.lake import Lake
from ml.registry import ModelRegistry
from spark_jobs.incremental import partition_range

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class NotEnoughData(RuntimeError):
    """The gold tables do not (yet) hold enough history to train and evaluate."""


@dataclass
class Report:
    """What a training run did, for the CLI (--json) and the Dagster metadata."""

    run_id: str
    tables: dict[str, int] = field(default_factory=dict)  # gold table -> rows written
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    champion: str | None = None
    champion_version: str | None = None
    windows: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # what learning from shown lists adds: target -> model -> metrics (ml.feedback.evaluate)
    feedback: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "tables": self.tables,
            "champion": self.champion,
            "champion_version": self.champion_version,
            "windows": self.windows,
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
            "evaluations": self.evaluations,
            "feedback": self.feedback,
        }


@dataclass(frozen=True)
class TrainingOptions:
    """The knobs of training (settings: ML_*, INTERACTION_HALF_LIFE_DAYS). `ground_truth_dir`
    holds the generator's held-out future purchases, read only to score the published lists
    (never to train or to pick a model)."""

    test_days: int
    churn_window_days: int
    propensity_window_days: int
    champion_metric: str
    recommendations: int
    champion_task: str
    interaction_half_life_days: float
    ranker_training_customers: int
    ranker_generator_customers: int
    ground_truth_dir: Path | None = None


class Tables:
    """Reads gold with delta-rs (Arrow, filtered in the scan), writes pandas/Arrow results with
    delta-rs, remembers versions."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def uri(self, table: str) -> str:
        return self.lake.table_uri(table)

    def require(self, table: str) -> DeltaTable:
        """The table, or NotEnoughData naming what builds it when it does not exist yet."""
        opened = self.lake.open(table)
        if opened is None:
            build = "lakehouse ml train" if table == "gold.customer_product_daily" else "gold"
            raise NotEnoughData(f"{table} does not exist yet at {self.uri(table)}: build {build}")
        return opened

    def arrow(
        self, table: str, columns: list[str] | None = None, filters: list | None = None
    ) -> pa.Table:
        opened = self.require(table)
        return opened.to_pyarrow_table(columns=columns, filters=filters)

    def versions(self, *tables: str) -> dict[str, int]:
        """Delta version of each input, recorded with every model trained on it."""
        versions = {table: self.lake.version(table) for table in tables}
        return {table: -1 if v is None else int(v) for table, v in versions.items()}

    def write(self, table: str, data: pd.DataFrame | pa.Table, append: bool = False) -> int:
        arrow = (
            data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        )
        write_deltalake(
            self.uri(table),
            arrow,
            mode="append" if append else "overwrite",
            schema_mode="merge" if append else "overwrite",
            storage_options=self.lake.storage_options,
        )
        return arrow.num_rows


class SparkLake(Tables):
    """The customer models' snapshots are a Spark job over the facts."""

    def __init__(self, spark: SparkSession, lake: Lake) -> None:
        super().__init__(lake)
        self.spark = spark

    def read(self, table: str) -> DataFrame:
        self.require(table)
        return self.spark.read.format("delta").load(self.uri(table))


def registry(lake: Lake) -> ModelRegistry:
    """Model artefacts live in the lake, next to the tables: <LAKE_URI>/models."""
    root = lake.path("models")
    if "://" in root and not root.startswith("file://"):
        raise NotImplementedError(
            f"the model registry writes files under the lake root; {root} is not a local path "
            "(object-store artefacts are not supported yet)"
        )
    Path(root.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    return ModelRegistry(root.removeprefix("file://"))


# ---------------------------------------------------------------------------------------------
# Windows


@dataclass(frozen=True)
class Windows:
    data_start: dt.date
    data_end: dt.date
    test_days: int
    churn_days: int
    propensity_days: int

    @property
    def test_start(self) -> dt.date:
        """The recommenders' test window is the `test_days` after this day (their models are
        fitted on the days up to it)."""
        return self.data_end - dt.timedelta(days=self.test_days)

    @property
    def validation_start(self) -> dt.date:
        """The validation window is the `test_days` after this day, just before the test
        window: models are chosen on it, never on the test window."""
        return self.test_start - dt.timedelta(days=self.test_days)

    def snapshot_cutoffs(self, extra: int = 3, step_days: int = 7) -> list[dt.date]:
        """Training snapshots (labels complete before the evaluation cutoff), the evaluation
        snapshot, and the scoring snapshot (the newest day, no labels yet)."""
        eval_cutoff = self.data_end - dt.timedelta(days=self.churn_days)
        latest_train = eval_cutoff - dt.timedelta(days=self.churn_days)
        train = [
            latest_train - dt.timedelta(days=step_days * i)
            for i in range(extra + 1)
            if latest_train - dt.timedelta(days=step_days * i) > self.data_start
        ]
        if not train:
            raise NotEnoughData(
                f"{(self.data_end - self.data_start).days + 1} days of history cannot hold a "
                f"training snapshot, a {self.churn_days}-day label window and an evaluation one"
            )
        return sorted(train) + [eval_cutoff, self.data_end]


def test_window_days(test_days: int, data_start: dt.date, data_end: dt.date) -> int:
    """The recommenders' window length: `test_days` (ML_TEST_DAYS), at most a fifth of the data."""
    return max(1, min(test_days, ((data_end - data_start).days + 1) // 5))


def ranker_snapshot_days(test_days: int, data_start: dt.date, data_end: dt.date) -> list[dt.date]:
    """The ranker's training cutoffs of every fit of the recommenders' chain (the validation
    start, the test start, the newest day; `ml.ranker.training_cutoffs`), sorted: the days
    gold.customer_product_features snapshots, each for the buyers of the window after it."""
    from ml.ranker import training_cutoffs

    window = test_window_days(test_days, data_start, data_end)
    fits = [data_end - dt.timedelta(days=window * k) for k in (2, 1, 0)]
    return sorted({day for as_of in fits for day in training_cutoffs(data_start, as_of, window)})


def windows(options: TrainingOptions, data_start: dt.date, data_end: dt.date) -> Windows:
    span = (data_end - data_start).days + 1
    churn = max(3, min(options.churn_window_days, span // 4))
    return Windows(
        data_start=data_start,
        data_end=data_end,
        test_days=test_window_days(options.test_days, data_start, data_end),
        churn_days=churn,
        # at most half the churn window, so the two labels stay different questions
        propensity_days=max(1, min(options.propensity_window_days, churn // 2)),
    )


def data_span(lake: Tables) -> tuple[dt.date, dt.date]:
    """First day with sales or events in gold, and the last day with sales (events alone when
    there are no sales), from the facts' Delta logs. Clickstream days after the newest sale (a
    live stream ahead of the ERP) have no purchases to label yet, so they end no window."""
    facts = ("gold.fact_sales_line", "gold.fact_events")
    for table in facts:
        lake.require(table)
    sales, events = (partition_range(lake.uri(t), lake.lake.options) for t in facts)
    spans = [s for s in (sales, events) if s]
    if not spans:
        raise NotEnoughData("gold.fact_sales_line and gold.fact_events are empty")
    return min(s[0] for s in spans), (sales or events)[1]


def metric_rows(
    run: dict[str, Any],
    model: str,
    version: str | None,
    population: str,
    params: dict[str, Any],
    metrics: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Long-format evaluation rows (numeric metrics only)."""
    return [
        {
            **run,
            "model": model,
            "model_version": version,
            "population": population,
            "metric": name,
            "value": float(value),
            "params": json.dumps(params, sort_keys=True, default=str),
        }
        for name, value in metrics.items()
        if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    ]


def params_of(model: object) -> dict[str, Any]:
    """A model's plain parameters: its public number, string and flag attributes."""
    return {
        k: v
        for k, v in vars(model).items()
        if isinstance(v, int | float | str | bool) and not k.startswith("_")
    }


def start_run(
    tables: Tables, options: TrainingOptions, inputs: tuple[str, ...], span: tuple[dt.date, dt.date]
) -> tuple[Report, dict[str, int], Windows]:
    """What every runner begins with: a report, the inputs' Delta versions (recorded with every
    model) and the windows of the data (`span`: its first and last day)."""
    versions = tables.versions(*inputs)
    return Report(run_id=uuid.uuid4().hex[:12]), versions, windows(options, *span)


def write_model_log(
    tables: Tables, rows: list[dict[str, Any]], models: ModelRegistry
) -> dict[str, int]:
    """Append a run's evaluation rows (if any) and list the registry again (each trainer saves
    models of its own); rows written per table."""
    written = {"gold.model_registry": tables.write("gold.model_registry", registry_frame(models))}
    if rows:
        written["gold.model_evaluations"] = tables.write(
            "gold.model_evaluations", pd.DataFrame(rows), append=True
        )
    return written


def registry_frame(models: ModelRegistry) -> pd.DataFrame:
    """gold.model_registry: one row per stored model version."""
    rows = [
        {
            "model_name": v.name,
            "version": v.version,
            "created_at": v.created_at,
            "path": v.path,
            "params": json.dumps(v.params, sort_keys=True, default=str),
            "metrics": json.dumps(v.metrics, sort_keys=True, default=str),
            "inputs": json.dumps(v.inputs, sort_keys=True, default=str),
        }
        for name in models.models()
        for v in models.versions(name)
    ]
    return pd.DataFrame(rows)
