"""The recommenders' runners: gold → models → gold, in Python only (no Spark session is held
through the long fits), a chain of three Dagster assets:

  1. `evaluate_recommenders` reads `gold.customer_product_daily` (the Spark step of
     spark_jobs.steps: pairs per day, never the raw facts) and the current catalogue with
     delta-rs, and fits every model and baseline (buy-again, popularity of the last 28 days)
     twice: up to the validation window (the champion is chosen on it, for
     ML_CHAMPION_TASK) and up to the test window (the figure reported, untouched by any
     choice). Each is scored on two tasks (ml.evaluation): `all` products bought in the window
     and `new` ones. Rows go to `gold.model_evaluations` (long format: one row per run × model
     × split × task × metric), the champion's lists as of each window to
     `gold.recommendation_backtests`.
  2. `refit_recommenders` fits every model up to the newest day and versions it in the
     registry (`<lake>/models`, listed in `gold.model_registry`), the newest evaluation's
     champion also as `recommender`; it scores them on the generator's held-out future when
     the lake was generated (read only to score, after every fit), rows of the same run.
  3. `publish_recommendations` gives `gold.customer_recommendations`: the registry's
     `recommender` lists, filled with the popular products of the last weeks, exactly as
     evaluated.

Each writes its tables only once everything it computes is done, so a step that fails leaves
its tables as they were.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from deltalake import DeltaTable

from lakehouse.core.lake import Lake
from ml import (
    RANKER_CANDIDATES,
    RANKER_CANDIDATES_SAMPLES,
    RANKER_FEATURES,
    RANKER_FEATURES_WINDOWS,
    RECOMMENDER_INPUTS,
    feedback,
)
from ml.evaluation import TASKS, Window, fill_lists
from ml.interactions import Interactions, decayed
from ml.ranker import (
    GENERATOR_FEATURES,
    STATISTICS,
    GeneratorModel,
    LearnedRanker,
    NotEnoughHistory,
)
from ml.ranker import Catalogue as RankerCatalogue
from ml.recommenders import (
    ALS,
    BPR,
    EASE,
    BusinessRules,
    BuyAgain,
    ContentBased,
    Hybrid,
    ItemKNN,
    Popularity,
    Recommender,
    Trending,
    UserKNN,
)
from spark_jobs.incremental import ConsumedVersions, partition_row_counts
from spark_jobs.training import (
    NotEnoughData,
    Report,
    Tables,
    TrainingOptions,
    metric_rows,
    params_of,
    ranker_snapshot_days,
    registry,
    start_run,
    test_window_days,
    write_model_log,
)

log = logging.getLogger(__name__)

K = 10  # the cut-off of every offline metric
POPULAR_DAYS = 28  # the fill of every list: what sold to the most customers in these days
EXPOSURES = "gold.recommendation_exposures"
DAILY = "gold.customer_product_daily"
# a training cutoff's candidates: the pair, then every generator's score and rank
CANDIDATE_COLUMNS = ["customer_id", "product_id", *GENERATOR_FEATURES]


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

    @cached_property
    def for_ranker(self) -> RankerCatalogue:
        """One for every fit, so its content similarity is computed once per run."""
        columns = ["product_id", "name", "category", "subcategory", "brand", "price"]
        return RankerCatalogue(self.products[columns], self.city)


PRODUCT_COLUMNS = {
    "product_id": "product_id",
    "product_name": "name",
    "brand_name": "brand",
    "category_name": "category",
    "subcategory_name": "subcategory",
    "list_price": "price",
    "is_active": "is_active",
}


def load_catalogue(lake: Tables) -> Catalogue:
    """The current rows of the product and customer dims."""
    current = [("is_current", "=", True)]
    products = (
        lake.arrow("gold.dim_product", list(PRODUCT_COLUMNS), current)
        .rename_columns(list(PRODUCT_COLUMNS.values()))
        .to_pandas()
    )
    products["price"] = products["price"].astype(float)
    customers = lake.arrow(
        "gold.dim_customer", ["customer_id", "city_name", "area_name"], current
    ).to_pandas()
    return Catalogue(products, customers)


def load_daily(lake: Tables) -> pd.DataFrame:
    """Daily interactions (customer_id, product_id, interaction_date, views, adds_to_cart,
    purchases, weight, at) from gold.customer_product_daily. The dates stay datetime64, not
    Python date objects: the ranker turns them into day numbers at every cutoff, by a cast so."""
    return lake.arrow("gold.customer_product_daily").to_pandas(date_as_object=False)


def candidates(catalogue: Catalogue) -> dict[str, Callable[[], Recommender]]:
    """The models compared offline (fitted on every interaction); the baselines fitted on
    purchases are `baselines`, the hybrid is assembled from fitted ones (`hybrid`)."""
    products = catalogue.products
    return {
        "popularity": Popularity,
        "trending": lambda: Trending(groups=catalogue.city),
        "als": lambda: ALS(factors=64, iterations=15, num_threads=2),
        "bpr": lambda: BPR(factors=64, iterations=100, num_threads=2),
        "item_knn_cosine": lambda: ItemKNN(neighbours=50, metric="cosine"),
        "item_knn_jaccard": lambda: ItemKNN(neighbours=50, metric="jaccard"),
        "content": lambda: ContentBased(products),
        "user_knn": UserKNN,
        "ease": EASE,
    }


# The hybrid's blend: item-kNN (Jaccard), ALS, user-kNN, and popularity at half
# weight, fixed. It was picked among six blends by an earlier protocol that scored the demo's
# last 14 days, today's test window; the champion is now chosen on the validation window only.
HYBRID_WEIGHTS = {"item_knn_jaccard": 1.0, "als": 1.0, "user_knn": 1.0, "popularity": 0.5}


def hybrid(fitted: Mapping[str, Recommender], rules: BusinessRules, train: Interactions) -> Hybrid:
    model = Hybrid(
        {n: (fitted[n], weight) for n, weight in HYBRID_WEIGHTS.items() if n in fitted},
        cold_start=fitted["trending"],
        content=fitted["content"],
        rules=rules,
    )
    return model.fit(train)  # type: ignore[return-value]


def purchase_interactions(daily: pd.DataFrame, **universe: Any) -> Interactions:
    """Purchases only: weight = times bought (a day counts once), with the purchase days."""
    bought = daily[daily["purchases"] > 0]
    return Interactions.from_arrays(
        bought["customer_id"], bought["product_id"], None, bought["at"], **universe
    )


def baselines(daily: pd.DataFrame, as_of: dt.date) -> dict[str, Recommender]:
    """The simple answers every model must beat, fitted on the purchases up to `as_of`:
    what each customer buys again, and what sold to the most customers in the last weeks."""
    popular = recent_popularity(daily, as_of)
    return {"buy_again": BuyAgain().fit(purchase_interactions(daily)), popular.name: popular}


def recent_popularity(daily: pd.DataFrame, as_of: dt.date) -> Popularity:
    """What sold to the most customers in the `POPULAR_DAYS` up to `as_of`."""
    days = pd.to_datetime(daily["interaction_date"])
    recent = daily[days > pd.Timestamp(as_of - dt.timedelta(days=POPULAR_DAYS))]
    popular = Popularity().fit(purchase_interactions(recent))
    popular.name = f"popularity_{POPULAR_DAYS}d"
    return popular


def popular_fill(popular: Recommender, catalogue: Catalogue) -> np.ndarray:
    """The fill of every list: the active products in the order of `popular`."""
    ranked = popular.recommend([-1], len(popular.item_ids), False).product_ids[0]
    return ranked[(ranked >= 0) & np.isin(ranked, catalogue.active)]


def recommender_span(daily: pd.DataFrame) -> tuple[dt.date, dt.date]:
    """The first day of the interactions and the newest day with purchases: the windows end
    there, as later days (a live clickstream ahead of the ERP) have no purchases to score yet."""
    days = daily["interaction_date"]
    purchase_days = days[daily["purchases"] > 0]
    end = purchase_days.max() if len(purchase_days) else days.max()
    return pd.Timestamp(days.min()).date(), pd.Timestamp(end).date()


def load_feedback(tables: Tables) -> pd.DataFrame | None:
    """What shoppers did with the lists they were shown in the newest `feedback.FEEDBACK_DAYS`
    days of `gold.recommendation_exposures` (ml.feedback rows), None when nothing was shown yet.
    Only the answers somebody acted on are read: their ids first, then their rows, streamed."""
    counts = partition_row_counts(tables.uri(EXPOSURES), tables.lake.storage_options)
    days = [day for day, n in counts.items() if n]
    if not days:
        return None
    since = max(days) - dt.timedelta(days=feedback.FEEDBACK_DAYS - 1)
    recent = [("event_date", ">=", since)]
    acted = tables.arrow(
        EXPOSURES,
        columns=["request_id"],
        filters=[[*recent, (flag, "=", True)] for flag in ("clicked", "carted", "purchased")],
    )
    ids = pc.unique(acted["request_id"])
    rows = (
        tables.require(EXPOSURES)
        .to_pyarrow_dataset()
        .to_table(
            columns=list(feedback.COLUMNS),
            filter=(pc.field("event_date") >= since) & pc.field("request_id").isin(ids),
        )
    )
    out = feedback.feedback(rows.to_pandas())
    return out if len(out) else None


def snapshot_rows(
    table: DeltaTable, day: dt.date, customers: np.ndarray | None = None
) -> pd.DataFrame | None:
    """The ranker's statistics (`ml.ranker.STATISTICS`) as of `day` in a `RANKER_FEATURES`
    table, of `customers` only when given; None when it holds none of that day."""
    filters = [("as_of", "=", day)]
    if customers is not None:
        filters.append(("customer_id", "in", customers.tolist()))
    rows = table.to_pyarrow_table(columns=list(STATISTICS), filters=filters)
    if not rows.num_rows:
        return None
    # sorted as the ranker keeps them, converted column by column, freeing Arrow's as it goes
    rows = rows.sort_by([("customer_id", "ascending"), ("product_id", "ascending")])
    return rows.to_pandas(split_blocks=True, self_destruct=True)


class StepTable:
    """A table a Spark step of the `ml` group computed ahead for the ranker, read with
    delta-rs; none of it is used (the ranker computes what it needs itself) when it does not
    exist, or lacks some of the `columns` the runner reads (built by an older version of its
    step), or was built from other versions of its step's inputs than the runner reads now, or
    for other settings (`settings`: as recorded with the versions). It counts the days read and
    those computed in-process."""

    def __init__(
        self, tables: Tables, table: str, settings: Mapping[str, int], columns: Sequence[str]
    ) -> None:
        self.tables = tables
        self.table = table
        self.read: set[dt.date] = set()
        self.computed: set[dt.date] = set()
        self.stale = self._stale(settings, columns)

    def _stale(self, settings: Mapping[str, int], columns: Sequence[str]) -> str | None:
        """Why the table cannot be used, or None."""
        from spark_jobs.steps import step

        opened = self.tables.lake.open(self.table)
        if opened is None:
            return "does not exist"
        missing = sorted(set(columns) - {field.name for field in opened.schema().fields})
        if missing:
            return f"lacks {', '.join(missing)} (built by an older version of its step)"
        state = ConsumedVersions(
            self.tables.uri("_state.consumed_versions"), self.tables.lake.options
        )
        for source in step(self.table).inputs:
            built_from, current = state.get(self.table, source), self.tables.lake.version(source)
            if built_from != current:
                return f"was built from version {built_from} of {source}, not {current}"
        for setting, value in settings.items():
            built_for = state.get(self.table, setting)
            if built_for != value:
                return f"was built for {setting.removeprefix('setting:')}={built_for}, not {value}"
        return None

    def _counted(self, day: dt.date, rows: pd.DataFrame | None) -> pd.DataFrame | None:
        (self.computed if rows is None else self.read).add(day)
        return rows

    def summary(self) -> str:
        """How many days came from the table, and which were computed in-process."""
        out = f"{len(self.read)} days read from {self.table}"
        if self.computed:
            days = ", ".join(str(d) for d in sorted(self.computed))
            why = f" ({self.table} {self.stale})" if self.stale else ""
            out += f"; computed in-process: {days}{why}"
        return out


class FeatureSnapshots(StepTable):
    """The ranker's snapshot statistics from `RANKER_FEATURES`, as
    `ml.ranker.StatisticsSource`: the rows of a day (and of some customers); None for a day
    it does not hold."""

    def __init__(self, tables: Tables, test_days: int) -> None:
        settings = {RANKER_FEATURES_WINDOWS: test_days}
        super().__init__(tables, RANKER_FEATURES, settings, list(STATISTICS))

    def __call__(self, day: dt.date, customers: np.ndarray | None) -> pd.DataFrame | None:
        rows = None
        if self.stale is None:
            rows = snapshot_rows(self.tables.require(self.table), day, customers)
        return self._counted(day, rows)


class CutoffCandidates(StepTable):
    """The training cutoffs' candidates from `RANKER_CANDIDATES` (`ml.ranker.CandidateSource`):
    a day's rows when they are of exactly the buyers asked for, else None."""

    def __init__(self, tables: Tables, options: TrainingOptions) -> None:
        settings = candidate_settings(
            options.test_days, options.ranker_training_customers, options.ranker_generator_customers
        )
        super().__init__(tables, RANKER_CANDIDATES, settings, CANDIDATE_COLUMNS)

    def __call__(self, day: dt.date, buyers: np.ndarray) -> pd.DataFrame | None:
        rows = None
        if self.stale is None:
            rows = candidate_rows(self.tables.require(self.table), day)
            if rows is not None and not np.array_equal(rows["customer_id"].unique(), buyers):
                rows = None  # another sample of buyers (the ranker proposes for its own)
        return self._counted(day, rows)


def candidate_settings(
    test_days: int, training_customers: int, generator_customers: int
) -> dict[str, int]:
    """The settings `RANKER_CANDIDATES` is built for, as recorded with its inputs' versions."""
    training, generator = RANKER_CANDIDATES_SAMPLES
    return {
        RANKER_FEATURES_WINDOWS: test_days,
        training: training_customers,
        generator: generator_customers,
    }


def candidate_rows(table: DeltaTable, day: dt.date) -> pd.DataFrame | None:
    """A training cutoff's candidates in a `RANKER_CANDIDATES` table, sorted as the ranker's
    union sorts them (customer, product); None when it holds none of that day."""
    rows = table.to_pyarrow_table(columns=CANDIDATE_COLUMNS, filters=[("as_of", "=", day)])
    if not rows.num_rows:
        return None
    rows = rows.sort_by([("customer_id", "ascending"), ("product_id", "ascending")])
    return rows.to_pandas(split_blocks=True, self_destruct=True)


def ranker_candidates(
    tables: Tables,
    test_days: int,
    training_customers: int,
    generator_customers: int,
    progress: Callable[[str], None] = log.info,
) -> Iterator[pd.DataFrame]:
    """gold.customer_product_candidates, a training cutoff at a time: every generator's score
    and rank of what it proposes to the cutoff's buyers (`LearnedRanker.training_candidates`),
    for every training cutoff of the recommenders' chain (`ranker_snapshot_days`), with their
    snapshot statistics from `RANKER_FEATURES`. The library models (implicit, scikit-learn,
    sparse_dot_topn) fit here, in this process: Spark cannot fit them."""
    daily = _require_daily(tables)
    first, end = recommender_span(daily)
    daily = daily[pd.to_datetime(daily["interaction_date"]) <= pd.Timestamp(end)]
    window = test_window_days(test_days, first, end)
    ranker = LearnedRanker(
        load_catalogue(tables).for_ranker,
        window,
        training_customers=training_customers,
        generator_customers=generator_customers,
    )
    statistics = FeatureSnapshots(tables, test_days)
    cutoffs = ranker_snapshot_days(test_days, first, end)
    for number, cutoff in enumerate(cutoffs, 1):
        clock = time.monotonic()
        frame = ranker.training_candidates(daily, cutoff, statistics)
        progress(
            f"candidates as of {cutoff} ({number}/{len(cutoffs)}): {len(frame):,} for "
            f"{frame['customer_id'].nunique():,} buyers in {time.monotonic() - clock:.1f} s"
        )
        yield frame.assign(as_of=cutoff)
    progress(f"the cutoffs' statistics: {statistics.summary()}")


class AheadTables:
    """The ranker's training inputs the group's steps computed ahead: the snapshots'
    statistics and the cutoffs' candidates."""

    def __init__(self, tables: Tables, options: TrainingOptions) -> None:
        self.statistics = FeatureSnapshots(tables, options.test_days)
        self.candidates = CutoffCandidates(tables, options)

    def report(self, report: Report, progress: Callable[[str], None]) -> None:
        """Which of them came from the tables (in the runner's report)."""
        report.windows["ranker_snapshots"] = self.statistics.summary()
        report.windows["ranker_candidates"] = self.candidates.summary()
        progress(f"the ranker's snapshots: {report.windows['ranker_snapshots']}")
        progress(f"the ranker's training candidates: {report.windows['ranker_candidates']}")


def future_purchases(options: TrainingOptions) -> pd.DataFrame | None:
    """The generator's held-out future (the purchases of the weeks after the lake's window), when
    this lake was generated: read only to score the lists, after every model is fitted."""
    if options.ground_truth_dir is None:
        return None
    path = options.ground_truth_dir / "future_purchases.parquet"
    if not path.exists():
        return None
    return pd.read_parquet(path, columns=["customer_id", "product_id"])


@dataclass
class Split:
    """One evaluation of every model: fitted on the days up to `fit_end`, scored on `window`."""

    name: str  # validation, test, future
    fit_end: dt.date
    window: Window
    models: dict[str, Recommender] = field(default_factory=dict)


def split(
    name: str,
    daily: pd.DataFrame,
    fit_end: dt.date,
    truth: pd.DataFrame,
    catalogue: Catalogue,
    options: TrainingOptions,
    window_days: int,
    answers: pd.DataFrame | None = None,
    ahead: AheadTables | None = None,
) -> Split:
    """Fit every model on the interactions up to `fit_end` and set up the scoring of `truth`
    (the purchases of the window after it); the ranker also learns from `answers` (ml.feedback
    rows): all of them for the production fit, else those shown before `fit_end` began. Its
    training cutoffs read their statistics and candidates from the `ahead` tables, where they
    hold them."""
    days = pd.to_datetime(daily["interaction_date"])
    seen = daily[days <= pd.Timestamp(fit_end)]
    train = decayed(seen, fit_end, options.interaction_half_life_days)
    fitted = baselines(seen, fit_end)
    bought = seen.loc[seen["purchases"] > 0, ["customer_id", "product_id"]].drop_duplicates()
    counts = pd.Series(train.item_user_counts(), index=train.item_ids)
    window = Window(
        purchases=truth,
        bought_before=bought,
        fallback=popular_fill(fitted[f"popularity_{POPULAR_DAYS}d"], catalogue),
        item_user_counts=counts,
        n_users=train.shape[0],
        catalogue_size=len(catalogue.active),
        known_customers=seen["customer_id"].unique().astype(np.int64),
    )
    factories = candidates(catalogue)
    fitted |= {name: make().fit(train) for name, make in factories.items()}
    fitted["hybrid"] = hybrid(fitted, BusinessRules(allowed_product_ids=catalogue.active), train)
    try:
        if answers is not None and name != "future":
            # a purchase credited to a later answer could be one the window after it scores
            answers = feedback.settled_before(answers, fit_end)
        ranker = LearnedRanker(
            catalogue.for_ranker,
            window_days,
            training_customers=options.ranker_training_customers,
            generator_customers=options.ranker_generator_customers,
        ).fit(
            seen,
            fit_end,
            answers,
            ahead.statistics if ahead else None,
            ahead.candidates if ahead else None,
        )
    except NotEnoughHistory as exc:
        raise NotEnoughData(f"{exc} (ML_TEST_DAYS sets the windows)") from exc
    fitted["ranker"] = ranker
    # the generators the other models do not already cover, each alone
    fitted |= {
        g: GeneratorModel(g, ranker)
        for g in ("repurchase_due", "browsed", "bought_with", "category_favourites")
    }
    for model_name, model in fitted.items():
        model.name = model_name
    return Split(name, fit_end, window, fitted)


def evaluate_recommenders(
    lake: Lake,
    options: TrainingOptions,
    progress: Callable[[str], None] = log.info,
) -> Report:
    """Every recommender and baseline fitted before the validation window and scored on it (the
    champion is chosen there), and fitted before the test window and scored on it (the figure
    reported, untouched by the choice). Appends the run's rows to gold.model_evaluations and
    writes the champion's lists as of each window (gold.recommendation_backtests)."""
    clock = time.monotonic()
    tables = Tables(lake)
    daily = _require_daily(tables)
    report, inputs, w = start_run(tables, options, RECOMMENDER_INPUTS, recommender_span(daily))
    report.windows = {
        "data_start": str(w.data_start),
        "data_end": str(w.data_end),
        "validation_start": str(w.validation_start),
        "test_start": str(w.test_start),
        "window_days": w.test_days,
    }
    progress(
        f"interactions {w.data_start}..{w.data_end}: validation after {w.validation_start}, "
        f"test after {w.test_start} ({w.test_days} days each)"
    )
    catalogue = load_catalogue(tables)
    report.seconds["load"] = time.monotonic() - clock

    days = pd.to_datetime(daily["interaction_date"])
    bought = daily[daily["purchases"] > 0]

    def window(after: dt.date, until: dt.date) -> pd.DataFrame:
        inside = (days > pd.Timestamp(after)) & (days <= pd.Timestamp(until))
        return bought.loc[inside[bought.index], ["customer_id", "product_id"]]

    windows_ = {
        "validation": (w.validation_start, window(w.validation_start, w.test_start)),
        "test": (w.test_start, window(w.test_start, w.data_end)),
    }
    if days.le(pd.Timestamp(w.validation_start)).sum() == 0 or any(
        truth.empty for _, truth in windows_.values()
    ):
        raise NotEnoughData(
            f"no interactions before {w.validation_start} or no purchases in a {w.test_days}-day "
            "window after it: nothing to evaluate (ML_TEST_DAYS sets the windows)"
        )
    answers = load_feedback(tables)
    if answers is not None:
        progress(f"learning from {answers['request_id'].nunique():,} answers shoppers acted on")
    splits: list[Split] = []
    ahead = AheadTables(tables, options)
    for name, (fit_end, truth) in windows_.items():
        progress(f"fitting every model up to {fit_end} ({name})")
        splits.append(
            split(name, daily, fit_end, truth, catalogue, options, w.test_days, answers, ahead)
        )
    ahead.report(report, progress)
    report.seconds["fit"] = time.monotonic() - clock - report.seconds["load"]

    run = _run(report.run_id, w.test_days, inputs)
    rows = _scored(splits, run, catalogue, options, report)
    report.seconds["evaluate"] = time.monotonic() - clock - sum(report.seconds.values())

    metric, target = options.champion_metric, options.champion_task
    chosen = {
        e["model"]: e[metric]
        for e in report.evaluations
        if e["split"] == "validation" and e["target"] == target
    }
    champion = max(chosen, key=lambda n: (chosen[n], n == "hybrid"))
    progress(f"champion {champion}: {metric} {chosen[champion]:.4f} on the validation window")
    for row in rows:
        row["is_champion"] = row["model"] == champion
        row["champion_metric"] = metric
    report.champion = champion

    started = time.monotonic()
    backtests = backtest_lists(splits, champion, options.recommendations, catalogue, daily)
    report.seconds["backtests"] = time.monotonic() - started
    # written last, together: a failure above leaves the previous run's tables as they were
    report.tables["gold.recommendation_backtests"] = tables.write(
        "gold.recommendation_backtests", backtests
    )
    report.tables["gold.model_evaluations"] = tables.write(
        "gold.model_evaluations", pd.DataFrame(rows), append=True
    )
    report.seconds["total"] = time.monotonic() - clock
    return report


@dataclass(frozen=True)
class Evaluation:
    """The newest evaluation run of the recommenders, as gold.model_evaluations holds it."""

    run_id: str
    champion: str
    champion_metric: str
    test_metrics: dict[str, dict[str, float]]  # model -> metric -> value (test, champion task)


def newest_evaluation(tables: Tables, options: TrainingOptions) -> Evaluation:
    """The champion and test figures of the newest `evaluate_recommenders` run."""
    if tables.lake.open("gold.model_evaluations") is None:
        raise NotEnoughData(_NOT_EVALUATED)
    recommendation = [("task", "=", "recommendation")]
    champions = tables.arrow(
        "gold.model_evaluations",
        ["run_id", "evaluated_at", "model", "champion_metric"],
        [*recommendation, ("is_champion", "=", True), ("split", "=", "validation")],
    ).to_pandas()
    if champions.empty:
        raise NotEnoughData(_NOT_EVALUATED)
    newest = champions.loc[champions["evaluated_at"].idxmax()]
    test = tables.arrow(
        "gold.model_evaluations",
        ["model", "metric", "value"],
        [
            *recommendation,
            ("run_id", "=", newest["run_id"]),
            ("split", "=", "test"),
            ("target", "=", options.champion_task),
            ("population", "=", "buyers"),
        ],
    ).to_pandas()
    metrics = {
        str(model): dict(zip(group["metric"], group["value"].astype(float), strict=True))
        for model, group in test.groupby("model", sort=False)
    }
    return Evaluation(
        str(newest["run_id"]), str(newest["model"]), str(newest["champion_metric"]), metrics
    )


_NOT_EVALUATED = (
    "gold.model_evaluations holds no evaluation of the recommenders yet: materialise it first "
    "(lakehouse ml train --part recommenders)"
)


def refit_recommenders(
    lake: Lake,
    options: TrainingOptions,
    progress: Callable[[str], None] = log.info,
) -> Report:
    """Every model refitted on every day and versioned in the registry; the champion of the
    newest evaluation also as `recommender` (what gold.customer_recommendations publishes).
    Scored on the generator's held-out future when the lake was generated, and, when shoppers
    acted on shown lists, on the newest of their answers (what the feedback adds); those rows
    join the evaluation run's in gold.model_evaluations."""
    clock = time.monotonic()
    tables = Tables(lake)
    evaluation = newest_evaluation(tables, options)
    daily = _require_daily(tables)
    report, inputs, w = start_run(tables, options, RECOMMENDER_INPUTS, recommender_span(daily))
    report.run_id, report.champion = evaluation.run_id, evaluation.champion
    report.windows = {"data_end": str(w.data_end), "window_days": w.test_days}
    catalogue = load_catalogue(tables)
    future = future_purchases(options)
    answers = load_feedback(tables)
    ahead = AheadTables(tables, options)
    report.seconds["load"] = time.monotonic() - clock
    progress(f"fitting every model up to {w.data_end} (production)")
    production = split(
        "future",
        daily,
        w.data_end,
        _no_purchases(future),
        catalogue,
        options,
        w.test_days,
        answers,
        ahead,
    )
    ahead.report(report, progress)
    report.seconds["fit"] = time.monotonic() - clock - report.seconds["load"]

    run = _run(report.run_id, w.test_days, inputs)
    rows = _scored([production], run, catalogue, options, report) if future is not None else []
    for row in rows:
        row["is_champion"] = row["model"] == evaluation.champion
        row["champion_metric"] = evaluation.champion_metric
    if answers is not None:
        progress("scoring what the feedback adds on the latest answers, held out")
        ranker = production.models["ranker"]
        report.feedback = feedback.evaluate(ranker, daily, answers, w.data_end, K)
        # never a champion candidate
        where = {**run, "task": "recommendation_feedback", "split": "test", "train_end": w.data_end}
        rows += [
            {**row, "is_champion": False, "champion_metric": None}
            for target, by_model in report.feedback.items()
            for name, values in by_model.items()
            for row in metric_rows(
                {**where, "target": target},
                name,
                None,
                "answers",
                {"debias": name.endswith("debiased")},
                values,
            )
        ]
    report.seconds["evaluate"] = time.monotonic() - clock - sum(report.seconds.values())

    models = registry(lake)
    versions = {}
    for name, model in production.models.items():
        if isinstance(model, GeneratorModel):
            continue  # a view of the ranker, stored with it
        versions[name] = models.save(
            f"recommender_{name}",
            model,
            params=params_of(model),
            metrics=evaluation.test_metrics.get(name, {}),
            inputs=inputs,
        ).version
    for row in rows:
        row["model_version"] = versions.get(row["model"])
    champion = evaluation.champion
    saved = models.save(
        "recommender",
        production.models[champion],
        params={"algorithm": champion, **params_of(production.models[champion])},
        metrics=evaluation.test_metrics.get(champion, {}),
        inputs=inputs,
        extra={
            "run_id": report.run_id,
            "champion_metric": evaluation.champion_metric,
            "champion_task": options.champion_task,
            "fit_end": str(w.data_end),
        },
    )
    report.champion_version = saved.version
    report.tables |= write_model_log(tables, rows, models)
    report.seconds["total"] = time.monotonic() - clock
    return report


def publish_recommendations(
    lake: Lake,
    options: TrainingOptions,
    progress: Callable[[str], None] = log.info,
) -> Report:
    """gold.customer_recommendations: the registry's newest `recommender` (the champion refitted
    on every day) lists `options.recommendations` products for every current customer, filled
    with the popular products of the last weeks, exactly as it was evaluated."""
    clock = time.monotonic()
    tables = Tables(lake)
    models = registry(lake)
    try:
        record = models.get("recommender")
    except KeyError as exc:
        raise NotEnoughData(
            "the registry holds no refitted champion (`recommender`) yet: materialise "
            "gold.model_registry first (lakehouse ml train --part recommenders)"
        ) from exc
    champion, fit_end = record.params["algorithm"], dt.date.fromisoformat(record.extra["fit_end"])
    model = models.load("recommender", record.version)
    daily = _require_daily(tables)
    catalogue = load_catalogue(tables)
    report = Report(run_id=str(record.extra.get("run_id")), champion=champion)
    report.champion_version = record.version
    report.seconds["load"] = time.monotonic() - clock
    customers = catalogue.customers["customer_id"].to_numpy(np.int64)
    progress(f"recommending {options.recommendations} products to {len(customers):,} customers")
    seen = daily[pd.to_datetime(daily["interaction_date"]) <= pd.Timestamp(fit_end)]
    recs = published_lists(
        model,
        champion,
        customers,
        options.recommendations,
        catalogue,
        seen,
        popular_fill(recent_popularity(seen, fit_end), catalogue),
    )
    recs = recs.assign(
        model=champion,
        model_version=record.version,
        generated_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
        as_of=fit_end,
    )
    report.seconds["recommend"] = time.monotonic() - clock - report.seconds["load"]
    report.tables["gold.customer_recommendations"] = tables.write(
        "gold.customer_recommendations", recs
    )
    report.seconds["total"] = time.monotonic() - clock
    return report


def _require_daily(tables: Tables) -> pd.DataFrame:
    daily = load_daily(tables)
    if daily.empty:
        raise NotEnoughData("gold.customer_product_daily is empty: no sales or events in gold")
    return daily


def _run(run_id: str, test_days: int, inputs: dict[str, int]) -> dict[str, Any]:
    """The columns every evaluation row of a run shares."""
    return {
        "run_id": run_id,
        "evaluated_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        "task": "recommendation",
        "test_days": test_days,
        "inputs": json.dumps(inputs, sort_keys=True),
    }


def _scored(
    splits: list[Split],
    run: dict[str, Any],
    catalogue: Catalogue,
    options: TrainingOptions,
    report: Report,
) -> list[dict[str, Any]]:
    """Every model of every split scored on both tasks: long rows for gold.model_evaluations;
    the buyers' figures also go to `report.evaluations`."""
    rows: list[dict[str, Any]] = []
    cold = f"cold_start {options.champion_metric}"
    for s in splits:
        for name, model in s.models.items():
            for target in TASKS:
                # every buyer of the window; those without any history before it
                # (cold_start) and the others (returning) are also stored on their own
                populations = s.window.score_by_population(model, target, K, items=catalogue.active)
                metrics = populations["buyers"]
                entry = {"model": name, "split": s.name, "target": target, **metrics}
                if "cold_start" in populations:
                    entry["cold_start users"] = populations["cold_start"]["users_evaluated"]
                    entry[cold] = populations["cold_start"][options.champion_metric]
                report.evaluations.append(entry)
                for population, values in populations.items():
                    rows += metric_rows(
                        {**run, "split": s.name, "target": target, "train_end": s.fit_end},
                        name,
                        None,
                        population,
                        params_of(model),
                        values,
                    )
    return rows


def _no_purchases(future: pd.DataFrame | None) -> pd.DataFrame:
    return future if future is not None else pd.DataFrame(columns=["customer_id", "product_id"])


def published_lists(
    model: Recommender,
    champion: str,
    customers: np.ndarray,
    k: int,
    catalogue: Catalogue,
    daily: pd.DataFrame,
    fallback: np.ndarray,
) -> pd.DataFrame:
    """The champion's top k of every customer (what was evaluated: its list, then `fallback`,
    the popular products of the last weeks), one row per slot with a reason a person can read."""
    recs = model.recommend(customers, k, False, items=catalogue.active)
    frame = recs.to_frame()
    if "reason" not in frame:
        frame["reason"] = champion
    frame["source"] = (
        frame["reason"].str.split(":").str[0].where(frame["reason"].str.contains(":"), "model")
    )
    # a customer with no row at all got the model's cold-start list (the ranker's: trending)
    cold = ~frame["customer_id"].isin(daily["customer_id"].unique())
    frame.loc[cold & frame["source"].eq("model"), "source"] = "cold_start"
    lists = fill_lists(recs.as_dict(), customers, fallback, k)
    filled = pd.DataFrame(
        [(c, rank + 1, p) for c, ids in lists.items() for rank, p in enumerate(ids.tolist())],
        columns=["customer_id", "rank", "product_id"],
    )
    out = filled.merge(
        frame[["customer_id", "product_id", "score", "reason", "source"]],
        on=["customer_id", "product_id"],
        how="left",
    )
    popular = out["reason"].isna()
    out.loc[popular, "reason"] = f"popular in the last {POPULAR_DAYS} days"
    out.loc[popular, "source"] = "popular"
    out.loc[popular, "score"] = 0.0
    if champion == "buy_again":
        out.loc[~popular, "reason"] = _bought_reasons(out[~popular], daily)
    return out


def backtest_lists(
    splits: list[Split],
    champion: str,
    k: int,
    catalogue: Catalogue,
    daily: pd.DataFrame,
) -> pd.DataFrame:
    """What the champion would have published at the start of each evaluation window, for the
    customers active in it: the honest batch lists to tune the live blend on (ml/blend.py)."""
    days = pd.to_datetime(daily["interaction_date"])
    frames = []
    # each window ends where the next split's fit ends (the last one: with the data)
    ends = [pd.Timestamp(s.fit_end) for s in splits[1:]] + [days.max()]
    for s, end in zip(splits, ends, strict=True):
        inside = (days > pd.Timestamp(s.fit_end)) & (days <= end)
        active = daily.loc[inside, "customer_id"].unique()
        customers = np.sort(active.astype(np.int64))
        model = s.models[champion]
        lists = published_lists(model, champion, customers, k, catalogue, daily, s.window.fallback)
        frames.append(lists.assign(split=s.name, as_of=s.fit_end, model=champion))
    return pd.concat(frames, ignore_index=True)


def _bought_reasons(rows: pd.DataFrame, daily: pd.DataFrame) -> pd.Series:
    """'bought 3 times, last on 2025-12-20' for each (customer, product) row."""
    bought = daily[daily["purchases"] > 0]
    bought = bought.assign(interaction_date=pd.to_datetime(bought["interaction_date"]).dt.date)
    facts = bought.groupby(["customer_id", "product_id"]).agg(
        times=("interaction_date", "nunique"), last=("interaction_date", "max")
    )
    found = facts.reindex(pd.MultiIndex.from_frame(rows[["customer_id", "product_id"]]))
    text = [
        f"bought on {last}" if times == 1 else f"bought {int(times)} times, last on {last}"
        for times, last in zip(found["times"], found["last"], strict=True)
    ]
    return pd.Series(text, index=rows.index)
