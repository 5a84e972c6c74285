"""Customer models: segmentation finds the right k, churn/propensity/CLV beat their baselines on
synthetic customers with signal, and the time split cannot leak."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from ml.customer_models import (
    FEATURE_COLUMNS,
    LABEL_COLUMNS,
    best_f1_threshold,
    explain,
    reliability_bins,
    segment_customers,
    snapshot_split,
    train_churn,
    train_clv,
    train_propensity,
)
from ml.synthetic import customer_snapshots


@pytest.fixture(scope="module")
def snapshots() -> pd.DataFrame:
    return customer_snapshots(n_customers=1500, seed=3)


def _show(name: str, metrics: dict) -> None:
    print(
        f"\n{name}: "
        + ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
        )
    )


def test_the_synthetic_snapshots_follow_the_declared_columns(snapshots: pd.DataFrame) -> None:
    assert list(snapshots.columns) == [
        "customer_id",
        "cutoff_date",
        *FEATURE_COLUMNS,
        *LABEL_COLUMNS,
    ]
    assert snapshots["cutoff_date"].nunique() == 3


def test_segmentation_picks_the_right_k_on_separated_blobs() -> None:
    x, truth = make_blobs(n_samples=600, centers=4, n_features=3, cluster_std=0.6, random_state=1)
    frame = pd.DataFrame(x, columns=["recency_days", "distinct_categories", "return_rate"])
    frame.insert(0, "customer_id", np.arange(1, 601))
    result = segment_customers(frame, features=list(frame.columns[1:]), k_range=range(2, 8))
    print(f"\nsilhouette by k: { {k: round(s, 3) for k, s in result.silhouette_by_k.items()} }")
    print(result.comparison.to_string(index=False))
    assert result.k == 4
    # the segments are the blobs (up to relabelling)
    crosstab = pd.crosstab(result.segments["segment"], truth)
    assert (crosstab.max(axis=1) == crosstab.sum(axis=1)).all()
    assert set(result.comparison["method"]) == {"kmeans", "dbscan", "agglomerative_ward"}
    assert result.comparison.set_index("method").loc["agglomerative_ward", "n_clusters"] == 4
    assert result.profiles["size"].sum() == 600
    assert {"segment", "size", "share", "recency_days", "label"} <= set(result.profiles.columns)
    # the fitted pipeline segments new rows the same way
    again = result.model.predict(frame[result.features])
    assert (again == result.segments["segment"].to_numpy()).all()


def test_snapshot_split_keeps_label_windows_out_of_the_evaluation_period(
    snapshots: pd.DataFrame,
) -> None:
    train, test = snapshot_split(snapshots, horizon_days=90)
    assert set(test["cutoff_date"].dt.strftime("%Y-%m-%d")) == {"2025-07-01"}
    assert set(train["cutoff_date"].dt.strftime("%Y-%m-%d")) == {"2025-01-01", "2025-04-01"}
    with pytest.raises(ValueError, match="at least one"):
        snapshot_split(snapshots[snapshots["cutoff_date"] > "2025-03-01"], horizon_days=120)


def test_churn_beats_recency_and_reports_everything(snapshots: pd.DataFrame) -> None:
    result = train_churn(snapshots, model="gbm", importance_rows=600)
    m = result.metrics
    _show("churn (no purchase in the 90 days after the cutoff)", m)
    print(result.importance.head(5).to_string(index=False))
    assert m["roc_auc"] >= m["baseline_roc_auc"] + 0.01
    assert m["roc_auc"] > 0.9 and m["pr_auc"] > m["base_rate"]
    assert 0 < m["threshold"] < 1 and m["f1"] > 0.8 and m["brier"] < 0.15
    bins = result.calibration
    assert bins["count"].sum() == m["eval_rows"]
    assert (bins["mean_predicted"] - bins["observed_rate"]).abs().max() < 0.2
    assert result.importance["feature"].iloc[0] in {"recency_days", "product_views_30d"}
    assert len(result.scores) == m["eval_rows"]
    test = snapshots[snapshots["cutoff_date"] == "2025-07-01"]
    assert np.allclose(result.predict_proba(test), result.scores["probability"])

    # TreeSHAP: per customer, the features that moved the log-odds most; overall, mean |SHAP|
    reasons, mean_abs = explain(result, test)
    assert len(reasons) == len(test) and mean_abs.index[0] in {"recency_days", "product_views_30d"}
    top = reasons.iloc[0].split(", ")
    assert len(top) == 3 and all(r.split(" ")[0] in result.features for r in top)
    contributions = result.model.booster_.predict(
        test[result.features].astype(float), pred_contrib=True
    )
    log_odds = np.log(result.scores["probability"] / (1 - result.scores["probability"]))
    assert np.allclose(contributions.sum(axis=1), log_odds, atol=1e-6)  # they add up


def test_propensity_beats_recency(snapshots: pd.DataFrame) -> None:
    result = train_propensity(snapshots, model="logistic")
    _show("30-day purchase propensity", result.metrics)
    assert result.metrics["roc_auc"] >= result.metrics["baseline_roc_auc"] + 0.01


def test_clv_beats_the_naive_average_spend_baseline(snapshots: pd.DataFrame) -> None:
    result = train_clv(snapshots)
    m = result.metrics
    _show("CLV (spend in the 90 days after the cutoff)", m)
    assert m["mae"] <= 0.8 * m["mae_baseline"]
    assert (result.scores["predicted"] >= 0).all()


def test_threshold_and_reliability_helpers() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.35, 0.4, 0.8, 0.9])
    assert best_f1_threshold(y, p) == pytest.approx(0.4)
    bins = reliability_bins(y, p, n_bins=2)
    assert bins["count"].tolist() == [3, 3]
    assert bins["observed_rate"].tolist() == [0.0, 1.0]
