"""The training runner: gold (through Spark) → models → gold outputs, evaluation and registry.

Two entry points, each one Dagster asset and one CLI command (`lakehouse ml train`):

`train_recommenders`
  1. Spark builds the daily customer × product interactions (spark_jobs.ml_inputs); the arrays
     reach Python via Arrow (pairs per day, never the raw facts).
  2. Time split: train on everything up to T = newest day − test days, evaluate on the purchases
     of the days after T (ml.evaluation), every candidate next to the popularity baseline, and
     against the generator's ground truth when it is there.
  3. The champion (best ML_CHAMPION_METRIC) is refitted on all data and, wrapped in the hybrid's
     cold-start rules and business filters, writes `gold.customer_recommendations`.
  4. Spark writes `gold.similar_products` (co-occurrence CF; the content neighbours are added
     from Python), `gold.product_associations` and `gold.trending_products`.
  5. Every evaluated model and the champion are versioned in the registry (`<lake>/models`),
     listed in `gold.model_registry`; metrics go to `gold.model_evaluations` (long format: one
     row per run × model × metric).

`train_customer_models`
  Spark builds per-customer snapshots at several cutoffs (features before, labels after); then
  segmentation, churn, 30-day propensity and CLV (ml.customer_models) write
  `gold.customer_segments`, `gold.customer_segment_profiles`, `gold.customer_scores` and their
  evaluation rows.

Windows adapt to short histories (the demo has 120 days): the churn window is at most a
quarter of the history, the propensity window at most half the churn window, the test window at
most a fifth; the windows used are recorded with every evaluation row.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

from lakehouse.core.lake import Lake
from ml import TRAINING_INPUTS
from ml import customer_models as cm
from ml.evaluation import evaluate, top_category_agreement
from ml.interactions import Interactions
from ml.recommenders import (
    ALS,
    BPR,
    BusinessRules,
    ContentBased,
    Hybrid,
    ItemKNN,
    Popularity,
    Recommender,
    Trending,
    UserKNN,
)
from ml.registry import ModelRegistry

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

K = 10  # the cut-off of every offline metric
JUST_BOUGHT_DAYS = 14  # the business rule's "just bought" window
USER_KNN_MAX_CUSTOMERS = 200_000  # user-based CF scores batch × all customers: evaluation only
SIMILAR_PRODUCTS = 20  # neighbours per product in gold.similar_products
MIN_PAIR_SUPPORT = 0.0005  # association rules: itemsets in at least 0.05 % of invoices


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "tables": self.tables,
            "champion": self.champion,
            "champion_version": self.champion_version,
            "windows": self.windows,
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
            "evaluations": self.evaluations,
        }


@dataclass(frozen=True)
class TrainingOptions:
    """The knobs of training (settings: ML_*, INTERACTION_HALF_LIFE_DAYS). `ground_truth_dir`
    holds the generator's true tastes, used only to report how well the lists agree with them
    (never to train or to pick a model)."""

    test_days: int
    churn_window_days: int
    propensity_window_days: int
    champion_metric: str
    recommendations: int
    repeatable_categories: frozenset[str]
    interaction_half_life_days: float
    ground_truth_dir: Path | None = None


class SparkLake:
    """Reads through Spark, writes pandas/Arrow results with delta-rs, remembers versions."""

    def __init__(self, spark: SparkSession, lake: Lake) -> None:
        self.spark = spark
        self.lake = lake

    def uri(self, table: str) -> str:
        return self.lake.table_uri(table)

    def read(self, table: str) -> DataFrame:
        if self.lake.open(table) is None:
            raise NotEnoughData(
                f"{table} does not exist yet at {self.uri(table)}: build gold first"
            )
        return self.spark.read.format("delta").load(self.uri(table))

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

    def write_spark(self, table: str, frame: DataFrame) -> int:
        frame.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(
            self.uri(table)
        )
        opened = self.lake.open(table)
        return 0 if opened is None else int(opened.count())


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
    def train_end(self) -> dt.date:
        """T: the recommenders train on days ≤ T and are tested on the days after it."""
        return self.data_end - dt.timedelta(days=self.test_days)

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


def windows(options: TrainingOptions, data_start: dt.date, data_end: dt.date) -> Windows:
    span = (data_end - data_start).days + 1
    churn = max(3, min(options.churn_window_days, span // 4))
    return Windows(
        data_start=data_start,
        data_end=data_end,
        test_days=max(1, min(options.test_days, span // 5)),
        churn_days=churn,
        # at most half the churn window, so the two labels stay different questions
        propensity_days=max(1, min(options.propensity_window_days, churn // 2)),
    )


def data_span(lake: SparkLake) -> tuple[dt.date, dt.date]:
    """First and last day with sales or events in gold."""
    from pyspark.sql import functions as F

    lines = lake.read("gold.fact_sales_line").agg(
        F.min("invoice_date").alias("lo"), F.max("invoice_date").alias("hi")
    )
    events = lake.read("gold.fact_events").agg(
        F.min("event_date").alias("lo"), F.max("event_date").alias("hi")
    )
    rows = [r for r in lines.unionByName(events).collect() if r["lo"] is not None]
    if not rows:
        raise NotEnoughData("gold.fact_sales_line and gold.fact_events are empty")
    return min(r["lo"] for r in rows), max(r["hi"] for r in rows)


# ---------------------------------------------------------------------------------------------
# Recommenders


@dataclass
class Catalogue:
    products: pd.DataFrame  # product_id, name, brand, category, subcategory, price, is_active
    customers: pd.DataFrame  # customer_id, city_name, area_name

    @property
    def active(self) -> np.ndarray:
        return self.products.loc[self.products["is_active"], "product_id"].to_numpy(np.int64)

    @property
    def category(self) -> pd.Series:
        return self.products.set_index("product_id")["category"]

    @property
    def city(self) -> pd.Series:
        return self.customers.set_index("customer_id")["city_name"].dropna()


def load_catalogue(lake: SparkLake) -> Catalogue:
    products = (
        lake.read("gold.dim_product")
        .where("is_current")
        .selectExpr(
            "product_id",
            "product_name AS name",
            "brand_name AS brand",
            "category_name AS category",
            "subcategory_name AS subcategory",
            "CAST(list_price AS double) AS price",
            "is_active",
        )
        .toArrow()
        .to_pandas()
    )
    customers = (
        lake.read("gold.dim_customer")
        .where("is_current")
        .select("customer_id", "city_name", "area_name")
        .toArrow()
        .to_pandas()
    )
    return Catalogue(products, customers)


def load_daily(lake: SparkLake) -> pd.DataFrame:
    """Daily interactions (customer_id, product_id, interaction_date, purchases, weight, at)."""
    from spark_jobs.ml_inputs import daily_interactions

    frame = daily_interactions(lake.read("gold.fact_events"), lake.read("gold.fact_sales_line"))
    table = frame.select(
        "customer_id", "product_id", "interaction_date", "purchases", "weight", "at"
    ).toArrow()
    return table.to_pandas()


def decayed(
    daily: pd.DataFrame, as_of: dt.date, half_life_days: float, **universe: Any
) -> Interactions:
    """The interaction matrix as of a day: each day's weight halved every half-life before it
    (the decay of gold.customer_product_interactions)."""
    age = (pd.Timestamp(as_of) - pd.to_datetime(daily["interaction_date"])).dt.days.to_numpy()
    weight = daily["weight"].to_numpy(np.float64) * np.power(0.5, age / half_life_days)
    return Interactions.from_arrays(
        daily["customer_id"], daily["product_id"], weight, daily["at"], **universe
    )


def candidates(catalogue: Catalogue, n_customers: int) -> dict[str, Callable[[], Recommender]]:
    """The models compared offline; the hybrid is assembled from fitted ones (`hybrid`)."""
    products = catalogue.products
    out: dict[str, Callable[[], Recommender]] = {
        "popularity": Popularity,
        "trending": lambda: Trending(groups=catalogue.city),
        "als": lambda: ALS(factors=64, iterations=15, num_threads=2),
        "bpr": lambda: BPR(factors=64, iterations=100, num_threads=2),
        "item_knn_cosine": lambda: ItemKNN(neighbours=50, metric="cosine"),
        "item_knn_jaccard": lambda: ItemKNN(neighbours=50, metric="jaccard"),
        "content": lambda: ContentBased(products),
    }
    if n_customers <= USER_KNN_MAX_CUSTOMERS:
        out["user_knn"] = UserKNN
    return out


# The hybrid's blend: item-kNN (Jaccard), ALS, user-kNN where it runs, and popularity at half
# weight. On the demo data this beat every component alone and the other blends tried
# (docs/ml.md has the table); the cold-start and new-product parts are fixed (trending, content).
HYBRID_WEIGHTS = {"item_knn_jaccard": 1.0, "als": 1.0, "user_knn": 1.0, "popularity": 0.5}


def hybrid(fitted: Mapping[str, Recommender], rules: BusinessRules, train: Interactions) -> Hybrid:
    model = Hybrid(
        {n: (fitted[n], weight) for n, weight in HYBRID_WEIGHTS.items() if n in fitted},
        cold_start=fitted["trending"],
        content=fitted["content"],
        rules=rules,
    )
    return model.fit(train)  # type: ignore[return-value]


def business_rules(
    catalogue: Catalogue, daily: pd.DataFrame, as_of: dt.date, options: TrainingOptions
) -> BusinessRules:
    since = pd.Timestamp(as_of - dt.timedelta(days=JUST_BOUGHT_DAYS))
    days = pd.to_datetime(daily["interaction_date"])
    recent = daily.loc[
        (daily["purchases"] > 0) & (days > since) & (days <= pd.Timestamp(as_of)),
        ["customer_id", "product_id"],
    ]
    return BusinessRules(
        allowed_product_ids=catalogue.active,
        recent_purchases=recent,
        product_category=catalogue.category,
        repeatable_categories=options.repeatable_categories,
    )


def ground_truth(options: TrainingOptions) -> pd.DataFrame | None:
    """The generator's true customer tastes, when this lake was built from generated data."""
    if options.ground_truth_dir is None:
        return None
    path = options.ground_truth_dir / "customer_tastes.parquet"
    return pd.read_parquet(path) if path.exists() else None


def _rows(
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


def params_of(model: Recommender) -> dict[str, Any]:
    return {
        k: v
        for k, v in vars(model).items()
        if isinstance(v, int | float | str | bool) and not k.startswith("_")
    }


def _start(
    spark: SparkSession, lake: Lake, options: TrainingOptions
) -> tuple[SparkLake, Report, dict[str, int], Windows]:
    """What both runners begin with: the lake, a report, the inputs' Delta versions (recorded
    with every model) and the windows of the data in gold."""
    tables = SparkLake(spark, lake)
    inputs = tables.versions(*TRAINING_INPUTS)
    span = data_span(tables)
    return tables, Report(run_id=uuid.uuid4().hex[:12]), inputs, windows(options, *span)


def train_recommenders(
    spark: SparkSession,
    lake: Lake,
    options: TrainingOptions,
    progress: Callable[[str], None] = log.info,
) -> Report:
    clock = time.monotonic()
    tables, report, inputs, w = _start(spark, lake, options)
    first, last = w.data_start, w.data_end
    report.windows = {
        "data_start": str(first),
        "data_end": str(last),
        "train_end": str(w.train_end),
        "test_days": w.test_days,
    }
    progress(f"interactions {first}..{last}: train ≤ {w.train_end}, test {w.test_days} days")
    daily = load_daily(tables)
    catalogue = load_catalogue(tables)
    report.seconds["load"] = time.monotonic() - clock

    days = pd.to_datetime(daily["interaction_date"])
    train_rows = daily[days <= pd.Timestamp(w.train_end)]
    test = daily[(days > pd.Timestamp(w.train_end)) & (daily["purchases"] > 0)]
    if train_rows.empty or test.empty:
        raise NotEnoughData(
            f"no interactions before {w.train_end} or no purchases after it: nothing to evaluate"
        )
    train = decayed(train_rows, w.train_end, options.interaction_half_life_days)
    rules = business_rules(catalogue, daily, w.train_end, options)
    truth = ground_truth(options)

    def agreement(recs: dict[int, np.ndarray]) -> dict[str, float]:
        if truth is None:
            return {}
        found = top_category_agreement(recs, catalogue.category, truth, K)
        return {
            "truth_top_category_share": found["top_category_share"],
            "truth_chance_share": found["chance_share"],
        }

    run = {
        "run_id": report.run_id,
        "evaluated_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        "task": "recommendation",
        "train_end": w.train_end,
        "test_days": w.test_days,
        "inputs": json.dumps(inputs, sort_keys=True),
    }
    models = registry(lake)
    fitted: dict[str, Recommender] = {}
    scored: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    factories = candidates(catalogue, train.shape[0])
    for name, factory in [*factories.items(), ("hybrid", None)]:
        started = time.monotonic()
        progress(f"fitting and evaluating {name}")
        model = hybrid(fitted, rules, train) if factory is None else factory().fit(train)
        model.name = name
        fitted[name] = model
        metrics = evaluate(
            model, train, test["customer_id"], test["product_id"], k=K, more_metrics=agreement
        )
        metrics["fit_and_evaluate_seconds"] = time.monotonic() - started
        params = params_of(model)
        version = models.save(
            f"recommender_{name}", model, params=params, metrics=_plain(metrics), inputs=inputs
        ).version
        scored[name] = {**metrics, "model_version": version}
        rows += _rows(run, name, version, "warm", params, metrics)
        if name in ("popularity", "trending", "hybrid"):  # the ones that answer new customers
            cold = evaluate(
                model, train, test["customer_id"], test["product_id"], k=K, include_cold=True
            )
            rows += _rows(run, name, version, "all", params, cold)
    report.seconds["evaluate"] = time.monotonic() - clock - report.seconds["load"]

    metric = options.champion_metric
    champion = max(scored, key=lambda n: (scored[n][metric], n == "hybrid"))
    baseline = scored["popularity"][metric]
    progress(
        f"champion {champion}: {metric} {scored[champion][metric]:.4f} (popularity {baseline:.4f})"
    )
    for row in rows:
        row["is_champion"] = row["model"] == champion
        row["champion_metric"] = metric
    report.evaluations = [
        {"model": n, **{m: v for m, v in s.items() if isinstance(v, int | float | str)}}
        for n, s in scored.items()
    ]

    # The champion, refitted on everything, feeds the recommendations of every customer.
    started = time.monotonic()
    everything = decayed(daily, w.data_end, options.interaction_half_life_days)
    production_rules = business_rules(catalogue, daily, w.data_end, options)
    refit = {n: factories[n]().fit(everything) for n in ("trending", "content")}
    if champion == "hybrid":
        refit.update({n: factories[n]().fit(everything) for n in HYBRID_WEIGHTS if n in factories})
        final = hybrid(refit, production_rules, everything)
    else:
        main = refit.get(champion) or factories[champion]().fit(everything)
        final = Hybrid(
            {champion: (main, 1.0)},
            cold_start=refit["trending"],
            content=refit["content"],
            rules=production_rules,
        ).fit(everything)
    final.name = f"champion:{champion}"
    saved = models.save(
        "recommender",
        final,
        params={"algorithm": champion, **params_of(fitted[champion])},
        metrics=_plain({k: v for k, v in scored[champion].items() if k != "model_version"}),
        inputs=inputs,
        extra={
            "run_id": report.run_id,
            "champion_metric": metric,
            "evaluated_version": scored[champion]["model_version"],
        },
    )
    report.champion, report.champion_version = champion, saved.version
    customers = catalogue.customers["customer_id"].to_numpy(np.int64)
    progress(f"recommending {options.recommendations} products to {len(customers):,} customers")
    recs = final.recommend(customers, options.recommendations).to_frame()
    recs = recs.assign(
        model=champion,
        model_version=saved.version,
        generated_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
        as_of=w.data_end,
    )
    recs["source"] = recs["reason"].str.split(":").str[0]
    report.tables["gold.customer_recommendations"] = tables.write(
        "gold.customer_recommendations", recs
    )
    report.seconds["recommend"] = time.monotonic() - started

    started = time.monotonic()
    report.tables.update(product_tables(tables, options, w, refit["content"]))
    report.seconds["product_tables"] = time.monotonic() - started
    report.tables["gold.model_evaluations"] = tables.write(
        "gold.model_evaluations", pd.DataFrame(rows), append=True
    )
    report.tables["gold.model_registry"] = tables.write(
        "gold.model_registry", registry_frame(models)
    )
    report.seconds["total"] = time.monotonic() - clock
    return report


def product_tables(
    lake: SparkLake, options: TrainingOptions, w: Windows, content: ContentBased
) -> dict[str, int]:
    """gold.similar_products (Spark co-occurrence + content), product_associations, trending."""
    from spark_jobs.gold import customer_product_interactions
    from spark_jobs.ml_inputs import basket_rules, item_cooccurrence, trending_products

    events, lines = lake.read("gold.fact_events"), lake.read("gold.fact_sales_line")
    interactions = customer_product_interactions(
        events, lines, w.data_end, options.interaction_half_life_days
    )
    cf = item_cooccurrence(interactions, k=SIMILAR_PRODUCTS).toArrow().to_pandas()
    by_content = content.similar_items()
    by_content = by_content[by_content["rank"] <= SIMILAR_PRODUCTS].assign(
        method="content", co_customers=0
    )
    similar = pd.concat([cf, by_content[cf.columns]], ignore_index=True).assign(as_of=w.data_end)
    return {
        "gold.similar_products": lake.write("gold.similar_products", similar),
        "gold.product_associations": lake.write_spark(
            "gold.product_associations", basket_rules(lines, MIN_PAIR_SUPPORT)
        ),
        "gold.trending_products": lake.write_spark(
            "gold.trending_products",
            trending_products(events, lines, lake.read("gold.dim_customer"), w.data_end),
        ),
    }


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


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()}


# ---------------------------------------------------------------------------------------------
# Customer models


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
    tables, report, inputs, w = _start(spark, lake, options)
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
        rows += _rows(
            {**run, "task": "segmentation", "is_champion": method["method"] == "kmeans"},
            method["method"],
            version if method["method"] == "kmeans" else None,
            "scoring snapshot",
            {"features": segments.features},
            {k: v for k, v in method.items() if k != "method"},
        )
    rows += _rows(
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
        ).version
        rows += _rows(
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
        report.evaluations.append({"task": task, **result.metrics})
    progress("CLV: gradient boosting vs average daily spend × window")
    clv = cm.train_clv(labelled, horizon_days=w.churn_days)
    version = models.save("customer_clv", clv, metrics=_plain(clv.metrics), inputs=inputs).version
    rows += _rows(
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
    report.tables["gold.model_evaluations"] = tables.write(
        "gold.model_evaluations", pd.DataFrame(rows), append=True
    )
    report.tables["gold.model_registry"] = tables.write(
        "gold.model_registry", registry_frame(models)
    )
    report.seconds["total"] = time.monotonic() - clock
    return report
