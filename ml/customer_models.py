"""Customer models: segmentation, churn, CLV and 30-day purchase propensity.

Input: one row per customer per cutoff date (a "snapshot"), built by Spark from gold: features
use only what happened up to the cutoff, labels only what happened in the days after it. Stack
several cutoffs to train on older snapshots and evaluate on the newest one: the time split that
mirrors production (train on the past, score today, learn the truth later). The expected columns
are `FEATURES` and `LABELS` below, the one place they are defined.

Label definitions (the windows are ML_CHURN_WINDOW_DAYS, default 90, and
ML_PROPENSITY_WINDOW_DAYS, default 30; shorter when the history is too short to hold them, see
spark_jobs.training):
- churned: no purchase in the churn window after the cutoff (`orders_next_churn_window == 0`).
- purchase propensity: at least one purchase in the propensity window after the cutoff
  (`orders_next_propensity_window > 0`).
- CLV: net spend in the churn window after the cutoff (`spend_next_churn_window`), against the
  naive baseline "historical average daily spend × window" (monetary / tenure_days × window).

A training snapshot must have its whole label window before the evaluation cutoff
(cutoff + horizon ≤ eval cutoff), otherwise training would see the evaluation period.

Churn and propensity are LightGBM classifiers (histogram gradient boosting, like
scikit-learn's, whose trees TreeSHAP can read: LightGBM's `pred_contrib`), explained per
customer by `explain`: each feature's SHAP value, how much it moved the customer's log-odds.

Threads: every training function takes `n_threads` (default 1) and caps OpenMP/BLAS with
threadpoolctl while it runs. These fits are small; on a shared 2-core machine scikit-learn's
OpenMP busy-waiting made a HistGradientBoosting fit 10x slower with 2 threads than with 1.
None lifts the cap (all cores).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    mean_absolute_error,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    silhouette_score,
)
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from ml.drift import reference_profile


@dataclass(frozen=True)
class Column:
    name: str
    description: str


# Keys of a snapshot row.
KEYS = (
    Column("customer_id", "customer id (ERP)"),
    Column("cutoff_date", "snapshot date: features use data up to and including it"),
)
# Features, all numeric, computed from data up to the cutoff.
FEATURES = (
    Column("recency_days", "days since the last purchase (since registration if none)"),
    Column("frequency", "purchase invoices in the whole history"),
    Column("monetary", "net spend in the whole history (PKR)"),
    Column("tenure_days", "days since registration"),
    Column("avg_basket_value", "monetary / frequency (0 without purchases)"),
    Column("orders_30d", "purchase invoices in the last 30 days"),
    Column("orders_90d", "purchase invoices in the last 90 days"),
    Column("spend_30d", "net spend in the last 30 days"),
    Column("spend_90d", "net spend in the last 90 days"),
    Column("distinct_products", "distinct products bought"),
    Column("distinct_categories", "distinct categories bought"),
    Column("sessions_30d", "web/app sessions in the last 30 days"),
    Column("product_views_30d", "product views in the last 30 days"),
    Column("add_to_carts_30d", "add-to-cart events in the last 30 days"),
    Column("return_rate", "returned lines / bought lines"),
    Column("discount_share", "discount / gross amount"),
    Column("avg_days_between_orders", "mean gap between purchases (tenure with < 2 orders)"),
)
# Labels, computed from the days after the cutoff (absent on the snapshot being scored).
LABELS = (
    Column("orders_next_propensity_window", "purchase invoices in the propensity window after"),
    Column("orders_next_churn_window", "purchase invoices in the churn window after the cutoff"),
    Column("spend_next_churn_window", "net spend in the churn window after the cutoff"),
)
FEATURE_COLUMNS = [c.name for c in FEATURES]
LABEL_COLUMNS = [c.name for c in LABELS]
SEGMENT_FEATURES = [
    "recency_days",
    "frequency",
    "monetary",
    "avg_basket_value",
    "distinct_categories",
    "product_views_30d",
    "return_rate",
]
# Heavy-tailed counts and amounts: log1p before scaling, so a few big spenders do not make
# every other customer one cluster.
LOG_FEATURES = {
    "frequency",
    "monetary",
    "avg_basket_value",
    "orders_30d",
    "orders_90d",
    "spend_30d",
    "spend_90d",
    "distinct_products",
    "sessions_30d",
    "product_views_30d",
    "add_to_carts_30d",
}


def require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"customer feature frame lacks columns: {missing}")


def log1p_clipped(x: np.ndarray) -> np.ndarray:
    """log(1 + max(x, 0)): a module-level function so fitted pipelines pickle."""
    return np.log1p(np.clip(np.asarray(x, dtype=np.float64), 0.0, None))


def preprocessor(features: Sequence[str]) -> Pipeline:
    """log1p on heavy-tailed columns, then standardise every column."""
    logged = [f for f in features if f in LOG_FEATURES]
    plain = [f for f in features if f not in LOG_FEATURES]
    transformers: list[tuple[str, Any, list[str]]] = []
    if logged:
        transformers.append(("log", FunctionTransformer(log1p_clipped), logged))
    if plain:
        transformers.append(("plain", "passthrough", plain))
    return Pipeline([("columns", ColumnTransformer(transformers)), ("scale", StandardScaler())])


def snapshot_split(
    frame: pd.DataFrame, horizon_days: int, eval_cutoff: str | pd.Timestamp | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, eval): eval = the snapshot at `eval_cutoff` (default: the newest); train = the
    snapshots whose label window ends by then (cutoff + horizon_days ≤ eval_cutoff)."""
    require_columns(frame, ["customer_id", "cutoff_date"])
    cutoffs = pd.to_datetime(frame["cutoff_date"])
    t = cutoffs.max() if eval_cutoff is None else pd.Timestamp(eval_cutoff)
    train = frame[cutoffs <= t - pd.Timedelta(days=horizon_days)]
    test = frame[cutoffs == t]
    if train.empty or test.empty:
        raise ValueError(
            f"need a snapshot at {t.date()} and at least one {horizon_days} days before it"
        )
    return train.reset_index(drop=True), test.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Segmentation


@dataclass
class SegmentationResult:
    """K-means segments (k by silhouette) with profiles, and DBSCAN/agglomerative for contrast."""

    model: Pipeline  # preprocessing + KMeans; model.predict(frame[features]) segments new rows
    features: list[str]
    k: int
    silhouette_by_k: dict[int, float]
    segments: pd.DataFrame  # customer_id, segment
    profiles: pd.DataFrame  # segment, size, share, feature means, label
    comparison: pd.DataFrame  # method, n_clusters, silhouette, noise_share, rows


def segment_customers(
    frame: pd.DataFrame,
    features: Sequence[str] = tuple(SEGMENT_FEATURES),
    k_range: Sequence[int] = range(2, 9),
    sample_size: int = 5000,
    dbscan_min_samples: int = 10,
    random_state: int = 0,
    n_threads: int | None = 1,
) -> SegmentationResult:
    """RFM + behavioural features → log/standardise → K-means for each k in `k_range`; the k
    with the best silhouette wins (silhouette on a sample of `sample_size` rows: it is
    quadratic). DBSCAN (eps from the k-distance curve: the 90th percentile of each point's
    distance to its `dbscan_min_samples`-th neighbour) and Ward agglomerative clustering (at the
    chosen k) run on the same sample and are reported for comparison only."""
    with threadpool_limits(limits=n_threads):
        features = list(features)
        require_columns(frame, ["customer_id", *features])
        x = frame[features].astype(np.float64)
        prep = preprocessor(features).fit(x)
        z = prep.transform(x)
        rng = np.random.default_rng(random_state)
        sample = rng.choice(len(z), size=min(sample_size, len(z)), replace=False)
        zs = z[sample]

        scores: dict[int, float] = {}
        fitted: dict[int, KMeans] = {}
        for k in k_range:
            if k >= len(z):
                break
            km = KMeans(n_clusters=k, n_init=4, random_state=random_state).fit(z)
            labels = km.labels_[sample]
            if len(np.unique(labels)) < 2:
                continue
            scores[k] = float(silhouette_score(zs, labels))
            fitted[k] = km
        if not scores:
            raise ValueError("no k in k_range gave two or more clusters")
        best = max(scores, key=lambda k: scores[k])
        kmeans = fitted[best]
        model = Pipeline([*prep.steps, ("kmeans", kmeans)])
        segments = pd.DataFrame(
            {"customer_id": frame["customer_id"].to_numpy(), "segment": kmeans.labels_}
        )

        comparison = [
            {
                "method": "kmeans",
                "n_clusters": best,
                "silhouette": scores[best],
                "noise_share": 0.0,
                "rows": len(z),
            }
        ]
        comparison.append(_dbscan(zs, dbscan_min_samples))
        agg = AgglomerativeClustering(n_clusters=best, linkage="ward").fit_predict(zs)
        agg_silhouette = float(silhouette_score(zs, agg)) if len(np.unique(agg)) > 1 else np.nan
        comparison.append(
            {
                "method": "agglomerative_ward",
                "n_clusters": int(len(np.unique(agg))),
                "silhouette": agg_silhouette,
                "noise_share": 0.0,
                "rows": len(zs),
            }
        )
        return SegmentationResult(
            model=model,
            features=features,
            k=best,
            silhouette_by_k=scores,
            segments=segments,
            profiles=segment_profiles(frame, segments["segment"].to_numpy(), features),
            comparison=pd.DataFrame(comparison),
        )


def _dbscan(z: np.ndarray, min_samples: int) -> dict[str, Any]:
    n = min(min_samples, len(z) - 1)
    distances, _ = NearestNeighbors(n_neighbors=n + 1).fit(z).kneighbors(z)
    eps = float(np.quantile(distances[:, n], 0.9))
    labels = DBSCAN(eps=max(eps, 1e-6), min_samples=min_samples).fit_predict(z)
    clustered = labels >= 0
    n_clusters = int(len(np.unique(labels[clustered])))
    silhouette = (
        float(silhouette_score(z[clustered], labels[clustered])) if n_clusters > 1 else np.nan
    )
    return {
        "method": "dbscan",
        "n_clusters": n_clusters,
        "silhouette": silhouette,
        "noise_share": float(1 - clustered.mean()),
        "rows": len(z),
    }


def segment_profiles(
    frame: pd.DataFrame, segments: np.ndarray, features: Sequence[str]
) -> pd.DataFrame:
    """Per segment: size, share, the mean of each raw feature, and a short label comparing the
    segment's recency/frequency/monetary medians with the whole base's (medians on both sides:
    the features are heavy-tailed, so a segment mean is above the base median almost always)."""
    data = frame[list(features)].astype(np.float64).assign(segment=segments)
    grouped = data.groupby("segment")
    profiles = grouped.mean()
    profiles.insert(0, "size", grouped.size())
    profiles.insert(1, "share", profiles["size"] / len(data))
    medians = grouped.median()
    overall = data[list(features)].median()

    def label(segment: int) -> str:
        row = medians.loc[segment]
        parts = []
        if "recency_days" in row:
            parts.append("recent" if row["recency_days"] <= overall["recency_days"] else "lapsing")
        if "frequency" in row:
            parts.append("frequent" if row["frequency"] >= overall["frequency"] else "occasional")
        if "monetary" in row:
            parts.append("high spend" if row["monetary"] >= overall["monetary"] else "low spend")
        return ", ".join(parts)

    profiles["label"] = [label(segment) for segment in profiles.index]
    return profiles.reset_index()


# ---------------------------------------------------------------------------------------------
# Classifiers: churn and purchase propensity


@dataclass
class ClassifierResult:
    """A fitted classifier, its decision threshold and its time-split evaluation."""

    model: Any
    features: list[str]
    threshold: float
    metrics: dict[str, float | int | str]
    calibration: pd.DataFrame  # bin, mean_predicted, observed_rate, count
    importance: pd.DataFrame  # feature, importance_mean, importance_std (drop in ROC-AUC)
    scores: pd.DataFrame = field(repr=False)  # customer_id, cutoff_date, probability, predicted
    # the training snapshots' features and scores, binned: what drift is measured against
    reference: dict[str, Any] = field(default_factory=dict, repr=False)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(frame[self.features].astype(np.float64))[:, 1]


def _classifier(kind: Literal["gbm", "logistic"], random_state: int) -> Any:
    if kind == "gbm":
        return lgb.LGBMClassifier(
            n_estimators=150,
            learning_rate=0.05,
            num_leaves=15,
            random_state=random_state,
            n_jobs=1,
            verbose=-1,
        )
    return Pipeline([("scale", StandardScaler()), ("logistic", LogisticRegression(max_iter=1000))])


def explain(
    result: ClassifierResult, frame: pd.DataFrame, top: int = 3
) -> tuple[pd.Series, pd.Series]:
    """TreeSHAP of a LightGBM classifier on `frame`: (each row's `top` features by |SHAP| as
    "feature +0.42, …" (log-odds, the sign is the direction), and the mean |SHAP| per feature
    over the rows, largest first)."""
    x = frame[result.features].astype(np.float64)
    values = result.model.booster_.predict(x, pred_contrib=True)[:, :-1]  # last column: bias
    order = np.argsort(-np.abs(values), axis=1)[:, :top]
    names = np.array(result.features)
    reasons = [
        ", ".join(f"{names[j]} {values[i, j]:+.2f}" for j in row) for i, row in enumerate(order)
    ]
    mean_abs = pd.Series(np.abs(values).mean(axis=0), index=result.features)
    return pd.Series(reasons, index=frame.index), mean_abs.sort_values(ascending=False)


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability threshold that maximises F1 on (y, p)."""
    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))]) if len(thresholds) else 0.5


def reliability_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Calibration table: predictions cut into quantile bins; a calibrated model has
    observed_rate ≈ mean_predicted in every bin."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    frame = pd.DataFrame({"bin": bins, "p": p, "y": y})
    out = frame.groupby("bin").agg(
        mean_predicted=("p", "mean"), observed_rate=("y", "mean"), count=("y", "size")
    )
    return out.reset_index()


def train_classifier(
    frame: pd.DataFrame,
    label: pd.Series,
    horizon_days: int,
    features: Sequence[str] = tuple(FEATURE_COLUMNS),
    baseline_feature: str = "recency_days",
    baseline_sign: float = 1.0,
    model: Literal["gbm", "logistic"] = "gbm",
    eval_cutoff: str | pd.Timestamp | None = None,
    importance_rows: int = 5000,
    random_state: int = 0,
    n_threads: int | None = 1,
) -> ClassifierResult:
    """Time-split training and evaluation of a binary customer label.

    The threshold maximises F1 on out-of-fold predictions of the *training* snapshots (3-fold),
    so the evaluation F1 is not tuned on the evaluation data. Metrics on the evaluation
    snapshot: ROC-AUC, PR-AUC (average precision), F1/precision/recall at the threshold, Brier
    score, base rate, and the ROC-AUC of the one-feature baseline (`baseline_sign` ×
    `baseline_feature` as the score). Permutation importance = drop in evaluation ROC-AUC when a
    feature is shuffled (5 repeats, on up to `importance_rows` rows).
    """
    with threadpool_limits(limits=n_threads):
        features = list(features)
        require_columns(frame, ["customer_id", "cutoff_date", *features])
        data = frame.assign(_label=np.asarray(label, dtype=int))
        train, test = snapshot_split(data, horizon_days, eval_cutoff)
        x_train, y_train = train[features].astype(np.float64), train["_label"].to_numpy()
        x_test, y_test = test[features].astype(np.float64), test["_label"].to_numpy()
        if len(np.unique(y_train)) < 2 or len(np.unique(y_test)) < 2:
            raise ValueError("both classes must occur in the training and evaluation snapshots")

        cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=random_state)
        oof = cross_val_predict(
            _classifier(model, random_state), x_train, y_train, cv=cv, method="predict_proba"
        )[:, 1]
        threshold = best_f1_threshold(y_train, oof)
        clf = _classifier(model, random_state).fit(x_train, y_train)
        p = clf.predict_proba(x_test)[:, 1]
        predicted = (p >= threshold).astype(int)
        baseline = baseline_sign * test[baseline_feature].to_numpy(dtype=np.float64)
        metrics: dict[str, float | int | str] = {
            "model": model,
            "train_rows": len(train),
            "eval_rows": len(test),
            "eval_cutoff": str(pd.to_datetime(test["cutoff_date"]).max().date()),
            "base_rate": float(y_test.mean()),
            "roc_auc": float(roc_auc_score(y_test, p)),
            "pr_auc": float(average_precision_score(y_test, p)),
            "threshold": threshold,
            "f1": float(f1_score(y_test, predicted, zero_division=0)),
            "precision": float(precision_score(y_test, predicted, zero_division=0)),
            "recall": float(recall_score(y_test, predicted, zero_division=0)),
            "brier": float(brier_score_loss(y_test, p)),
            "baseline": f"{'' if baseline_sign > 0 else '-'}{baseline_feature}",
            "baseline_roc_auc": float(roc_auc_score(y_test, baseline)),
        }
        metrics["roc_auc_margin"] = float(metrics["roc_auc"]) - float(metrics["baseline_roc_auc"])

        rng = np.random.default_rng(random_state)
        rows = rng.choice(len(test), size=min(importance_rows, len(test)), replace=False)
        imp = permutation_importance(
            clf,
            x_test.iloc[rows],
            y_test[rows],
            scoring="roc_auc",
            n_repeats=5,
            random_state=random_state,
        )
        importance = pd.DataFrame(
            {
                "feature": features,
                "importance_mean": imp.importances_mean,
                "importance_std": imp.importances_std,
            }
        ).sort_values("importance_mean", ascending=False, ignore_index=True)
        scores = pd.DataFrame(
            {
                "customer_id": test["customer_id"].to_numpy(),
                "cutoff_date": test["cutoff_date"].to_numpy(),
                "probability": p,
                "predicted": predicted.astype(bool),
            }
        )
        trained = x_train.assign(score=clf.predict_proba(x_train)[:, 1])
        return ClassifierResult(
            clf,
            features,
            threshold,
            metrics,
            reliability_bins(y_test, p),
            importance,
            scores,
            reference_profile(trained, [*features, "score"]),
        )


def train_churn(
    frame: pd.DataFrame,
    label_column: str = "orders_next_churn_window",
    horizon_days: int = 90,
    **kwargs: Any,
) -> ClassifierResult:
    """Churn = no purchase in the `horizon_days` after the cutoff (label_column == 0).
    Baseline: recency alone (the longer since the last order, the likelier the churn)."""
    require_columns(frame, [label_column])
    label = frame[label_column] == 0
    return train_classifier(frame, label, horizon_days, baseline_sign=1.0, **kwargs)


def train_propensity(
    frame: pd.DataFrame,
    label_column: str = "orders_next_propensity_window",
    horizon_days: int = 30,
    **kwargs: Any,
) -> ClassifierResult:
    """30-day purchase propensity = at least one purchase in the 30 days after the cutoff.
    Baseline: recency (the more recent the last order, the likelier the next)."""
    require_columns(frame, [label_column])
    label = frame[label_column] > 0
    return train_classifier(frame, label, horizon_days, baseline_sign=-1.0, **kwargs)


# ---------------------------------------------------------------------------------------------
# CLV


@dataclass
class RegressionResult:
    model: Any
    features: list[str]
    metrics: dict[str, float | int | str]
    scores: pd.DataFrame = field(repr=False)  # customer_id, cutoff_date, predicted, baseline

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.clip(self.model.predict(frame[self.features].astype(np.float64)), 0.0, None)


def naive_clv(frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Historical average daily spend × horizon: monetary / max(tenure_days, 1) × horizon."""
    tenure = np.maximum(frame["tenure_days"].to_numpy(dtype=np.float64), 1.0)
    return frame["monetary"].to_numpy(dtype=np.float64) / tenure * horizon_days


def train_clv(
    frame: pd.DataFrame,
    label_column: str = "spend_next_churn_window",
    horizon_days: int = 90,
    features: Sequence[str] = tuple(FEATURE_COLUMNS),
    loss: Literal["squared_error", "absolute_error", "poisson"] = "absolute_error",
    eval_cutoff: str | pd.Timestamp | None = None,
    random_state: int = 0,
    n_threads: int | None = 1,
) -> RegressionResult:
    """Next-`horizon_days` spend with gradient boosting, against `naive_clv`; reports the MAE
    (and RMSE, and total predicted vs actual spend) of both and the relative MAE improvement.
    Absolute error by default: MAE is the figure the model is judged by, and spend is heavy-
    tailed, so a squared-error fit chases the few big spenders (on the demo data it lost to
    the baseline on MAE, 45.7 k vs 39.6 k, while absolute error won, 34.3 k, and had the lower
    RMSE too). Squared error estimates the mean, which is what sums to a revenue forecast; pass
    `loss="squared_error"` for that."""
    with threadpool_limits(limits=n_threads):
        features = list(features)
        require_columns(frame, ["customer_id", "cutoff_date", label_column, *features])
        train, test = snapshot_split(frame, horizon_days, eval_cutoff)
        model = HistGradientBoostingRegressor(
            loss=loss,
            max_iter=200,
            learning_rate=0.05,
            max_leaf_nodes=15,
            random_state=random_state,
        ).fit(train[features].astype(np.float64), train[label_column].to_numpy(dtype=np.float64))
        y = test[label_column].to_numpy(dtype=np.float64)
        predicted = np.clip(model.predict(test[features].astype(np.float64)), 0.0, None)
        baseline = naive_clv(test, horizon_days)
        mae_model = float(mean_absolute_error(y, predicted))
        mae_baseline = float(mean_absolute_error(y, baseline))
        metrics: dict[str, float | int | str] = {
            "train_rows": len(train),
            "eval_rows": len(test),
            "eval_cutoff": str(pd.to_datetime(test["cutoff_date"]).max().date()),
            "mae": mae_model,
            "mae_baseline": mae_baseline,
            "mae_improvement": 1.0 - mae_model / mae_baseline if mae_baseline else 0.0,
            "rmse": float(np.sqrt(np.mean((y - predicted) ** 2))),
            "rmse_baseline": float(np.sqrt(np.mean((y - baseline) ** 2))),
            "actual_total": float(y.sum()),
            "predicted_total": float(predicted.sum()),
            "baseline_total": float(baseline.sum()),
        }
        scores = pd.DataFrame(
            {
                "customer_id": test["customer_id"].to_numpy(),
                "cutoff_date": test["cutoff_date"].to_numpy(),
                "predicted": predicted,
                "baseline": baseline,
            }
        )
        return RegressionResult(model, features, metrics, scores)
