"""The customer models' runner: Spark builds per-customer snapshots at several cutoffs
(features before, labels after); then segmentation, churn, 30-day propensity and CLV
(ml.customer_models) write `gold.customer_features`, `gold.customer_segment_profiles`,
`gold.customer_scores`, their model versions and their evaluation rows.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lakehouse.core.lake import Lake
from ml import CUSTOMER_MODEL_INPUTS
from ml import customer_models as cm
from spark_jobs.training import (
    Report,
    SparkLake,
    TrainingOptions,
    Windows,
    data_span,
    metric_rows,
    registry,
    start_run,
    write_model_log,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()}


def load_snapshots(lake: SparkLake, w: Windows) -> pd.DataFrame:
    from spark_jobs.ml_inputs import customer_snapshots

    frame = customer_snapshots(
        lake.spark,
        lake.read("gold.fact_sales_line"),
        lake.read("gold.fact_events"),
        lake.read("gold.dim_customer"),
        lake.read("gold.dim_product"),
        w.snapshot_cutoffs(),
        w.propensity_days,
        w.churn_days,
        w.data_end,
    )
    snapshots = frame.toArrow().to_pandas()
    snapshots["cutoff_date"] = pd.to_datetime(snapshots["cutoff_date"])
    return snapshots


def _diagnostics(result: cm.ClassifierResult) -> dict[str, float]:
    """Feature importance and calibration as extra metric rows."""
    out = {
        f"importance:{r.feature}": float(r.importance_mean) for r in result.importance.itertuples()
    }
    for r in result.calibration.itertuples():
        out[f"calibration:{r.bin}:predicted"] = float(r.mean_predicted)
        out[f"calibration:{r.bin}:observed"] = float(r.observed_rate)
    return out


def train_customer_models(
    spark: SparkSession,
    lake: Lake,
    options: TrainingOptions,
    progress: Callable[[str], None] = log.info,
) -> Report:
    clock = time.monotonic()
    tables = SparkLake(spark, lake)
    report, inputs, w = start_run(tables, options, CUSTOMER_MODEL_INPUTS, data_span(tables))
    first, last = w.data_start, w.data_end
    cutoffs = w.snapshot_cutoffs()
    report.windows = {
        "data_start": str(first),
        "data_end": str(last),
        "cutoffs": [str(c) for c in cutoffs],
        "churn_days": w.churn_days,
        "propensity_days": w.propensity_days,
    }
    progress(f"customer snapshots at {', '.join(map(str, cutoffs))}")
    snapshots = load_snapshots(tables, w)
    report.tables["gold.customer_features"] = tables.write("gold.customer_features", snapshots)
    report.seconds["snapshots"] = time.monotonic() - clock
    scoring = snapshots[snapshots["cutoff_date"] == pd.Timestamp(w.data_end)].reset_index(drop=True)
    labelled = snapshots[snapshots["cutoff_date"] < pd.Timestamp(w.data_end)]
    run = {
        "run_id": report.run_id,
        "evaluated_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        "train_end": max(cutoffs[:-1]),
        "test_days": w.churn_days,
        "inputs": json.dumps(inputs, sort_keys=True),
        "is_champion": True,
        "champion_metric": "",
    }
    models = registry(lake)
    rows: list[dict[str, Any]] = []

    progress("segmentation: k-means, k by silhouette; DBSCAN and Ward for comparison")
    segments = cm.segment_customers(scoring)
    version = models.save(
        "customer_segments", segments.model, params={"k": segments.k}, inputs=inputs
    ).version
    for method in segments.comparison.to_dict("records"):
        rows += metric_rows(
            {**run, "task": "segmentation", "is_champion": method["method"] == "kmeans"},
            method["method"],
            version if method["method"] == "kmeans" else None,
            "scoring snapshot",
            {"features": segments.features},
            {k: v for k, v in method.items() if k != "method"},
        )
    rows += metric_rows(
        {**run, "task": "segmentation"},
        "kmeans",
        version,
        "scoring snapshot",
        {},
        {f"silhouette@k={k}": s for k, s in segments.silhouette_by_k.items()},
    )
    profiles = segments.profiles.assign(as_of=w.data_end, model_version=version)
    report.tables["gold.customer_segment_profiles"] = tables.write(
        "gold.customer_segment_profiles", profiles
    )

    scores = scoring[["customer_id"]].assign(
        as_of=w.data_end, segment=segments.segments["segment"].to_numpy()
    )
    scores["segment_label"] = scores["segment"].map(profiles.set_index("segment")["label"])
    tasks = [
        ("churn", lambda: cm.train_churn(labelled, horizon_days=w.churn_days), "churn_probability"),
        (
            "propensity",
            lambda: cm.train_propensity(labelled, horizon_days=w.propensity_days),
            "purchase_propensity",
        ),
    ]
    for task, train_task, column in tasks:
        progress(f"{task}: gradient boosting vs the recency baseline, time split")
        result = train_task()
        version = models.save(
            f"customer_{task}",
            result,
            params={"threshold": result.threshold},
            metrics=_plain(result.metrics),
            inputs=inputs,
            extra={"reference_profile": result.reference},  # drift monitoring
        ).version
        rows += metric_rows(
            {**run, "task": task},
            "gbm",
            version,
            "eval snapshot",
            {"window_days": w.churn_days if task == "churn" else w.propensity_days},
            {**result.metrics, **_diagnostics(result)},
        )
        scores[column] = result.predict_proba(scoring)
        if task == "churn":
            scores["is_churn_risk"] = scores[column] >= result.threshold
        # why, per customer (TreeSHAP), and what drives the model overall (mean |SHAP|)
        reasons, mean_abs = cm.explain(result, scoring)
        scores[f"{task}_reasons"] = reasons.to_numpy()
        rows += metric_rows(
            {**run, "task": task},
            "gbm",
            version,
            "scoring snapshot",
            {},
            {f"shap:{feature}": float(value) for feature, value in mean_abs.items()},
        )
        report.evaluations.append({"task": task, **result.metrics})
    progress("CLV: gradient boosting vs average daily spend × window")
    clv = cm.train_clv(labelled, horizon_days=w.churn_days)
    version = models.save("customer_clv", clv, metrics=_plain(clv.metrics), inputs=inputs).version
    rows += metric_rows(
        {**run, "task": "clv"},
        "gbm",
        version,
        "eval snapshot",
        {"window_days": w.churn_days},
        clv.metrics,
    )
    report.evaluations.append({"task": "clv", **clv.metrics})
    scores["clv_next_window"] = clv.predict(scoring)
    scores["clv_baseline"] = cm.naive_clv(scoring, w.churn_days)
    scores["clv_window_days"] = w.churn_days
    report.tables["gold.customer_scores"] = tables.write("gold.customer_scores", scores)
    report.tables |= write_model_log(tables, rows, models)
    report.seconds["total"] = time.monotonic() - clock
    return report
