"""Candidate generation and a learned ranker over their union (LightGBM LambdaMART).

Retrieval, then ranking, the way retail recommenders are built: each generator proposes a few
dozen products per customer from the history up to a cutoff day, and a LambdaMART model
(`lightgbm.LGBMRanker`) orders their union with features of the (customer, product) pair.

Generators (`GENERATORS`), each also usable alone as a model (`GeneratorModel`):
- `buy_again`: every product the customer bought, most bought first;
- `repurchase_due`: the same products, ordered by how due they are: days since the last
  purchase against the customer's own interval for it (or the product's typical one);
- `browsed`: viewed or carted in the last `BROWSE_DAYS` days and not bought, recency-decayed;
- `item_knn`: item-item CF (Jaccard) from the customer's decayed history;
- `user_knn`: what the most similar customers took (neighbours drawn from the
  `USER_KNN_POOL` customers with the most history, so it stays linear at any size);
- `als`: implicit ALS on the same history;
- `bought_with`: what is bought in the same basket as the customer's purchases (confidence of
  the basket rule, summed over their recency-decayed purchases);
- `content`: products like the customer's decayed history by name, brand, category and price
  band (TF-IDF): products nobody bought yet are reachable;
- `category_favourites`: the best sellers of the categories the customer buys in, their
  favourite brands of each category first;
- `trending_city`: what trends in the customer's city (cold customers included);
- `popular`: the best sellers of the last `POPULAR_DAYS` days;
- `ease`: Steck's EASE, item-item weights learnt in closed form from who took what.

Features (`FEATURES`) are computed from the rows up to the cutoff only (`Snapshot` filters the
history itself, and a test proves a later row changes nothing); labels are the purchases of the
`window_days` after it, and of the `LONG_WINDOW_DAYS` after it too where those end by the fit's
day (a second group of the same candidates). The ranker is trained on several earlier
cutoffs, so whether a bought product comes back is learned (repurchase cycles, categories
that repeat), not a rule. Customers with no history at all get the cold-start list instead
(`cold_start_scores`: what trends in their city, then the best sellers). When
the lists shown on the website have been answered (clicks, carts, purchases: ml/feedback.py),
each shown list is one more training group, its features as of the day before it was shown and
its positions corrected for by LightGBM's position-debiased LambdaMART.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from ml.interactions import day_number, day_numbers, decayed
from ml.recommenders import ALS, EASE, BoughtWith, ContentBased, ItemKNN, Trending, UserKNN
from ml.recommenders.base import Recommendations, Recommender, kth_of_packed, place_in_run

if TYPE_CHECKING:
    import lightgbm as lgb

GENERATORS = (
    "buy_again",
    "repurchase_due",
    "browsed",
    "item_knn",
    "user_knn",
    "als",
    "bought_with",
    "content",
    "category_favourites",
    "trending_city",
    "popular",
    # last: added on 2026-12-07, after the others' columns had their places (docs/ml_log.md)
    "ease",
)
# what the customer did with the product itself; its reasons say so in words of their own
HISTORY_GENERATORS = ("buy_again", "repurchase_due", "browsed")
# candidates each generator proposes per customer (docs/ml.md: 30 ranked no better than 10)
PER_GENERATOR = 10
BROWSE_DAYS = 60  # views and carts older than this propose nothing
BROWSE_HALF_LIFE_DAYS = 7.0
POPULAR_DAYS = 28
HALF_LIFE_DAYS = 30.0  # the decay of the history the CF generators and affinities see
# the ALS generator's iterations (the `als` model of the table keeps 15): with 8 the ranker
# scored the same NDCG@10 on the five windows before the test window, and ALS's fits, the
# largest part of the serving round and of each cutoff's candidates at 1 M customers, take
# about half the time (docs/ml_log.md)
ALS_ITERATIONS = 8
# earlier cutoffs the ranker learns from, half a label window apart (their label windows
# overlap): twice the groups of the same recent weeks (docs/ml.md: on both windows it was
# chosen on, 6 cutoffs half a window apart ranked better than 3 a window apart)
TRAINING_CUTOFFS = 6
# the training cutoffs whose LONG_WINDOW_DAYS after them end by the fit's day also learn
# what their buyers bought in those days (a second group each, the same candidates): the
# lists are judged over 28 days, and a staple due in the third or fourth week is a purchase
# there (docs/ml.md: on the 28-day windows before the test window it ranked better, on the
# 14-day ones the same). No effect when the label window is as long.
LONG_WINDOW_DAYS = 28
# buyers of a label window the ranker learns from (a seeded sample when there are more; 0 =
# every buyer): bounds the candidates and LightGBM's rows on a large customer base. Fewer
# groups rank worse (docs/ml.md), so this is a budget, not a free cut.
TRAINING_CUSTOMERS = 20_000
# customers whose histories a training cutoff's generators are fitted on: its sampled buyers
# and a seeded sample of the others (0 = every customer). The generators propose for those
# buyers only; collaborative filtering needs enough other histories, not every one of them.
# The serving generators are always fitted on every customer.
GENERATOR_CUSTOMERS = 100_000
SCORING_BATCH = 2_000  # customers proposed for and ranked at a time
SCORING_WORKERS = min(4, os.cpu_count() or 1)  # threads working through the batches
WARM_UP_CUSTOMERS = 50  # scored alone before the threads start (see `threaded`)
FACTS_KEPT = 2 * SCORING_WORKERS  # batches' statistics a snapshot keeps (`Snapshot.of`)
# scoring jobs of this many customers predict with the forest compiled to machine code
# (`CompiledForest`): its compile takes ~20 s, so smaller jobs keep LightGBM's predict
COMPILE_FROM_CUSTOMERS = 50_000
FEEDBACK_SNAPSHOT_DAYS = 7  # the answers of a week are featured as of the day before it
NOT_SHOWN = 0  # the position of a purchase group's rows (never on a page)
# trees: added until NDCG@10 of the newest training cutoff's groups has not improved for
# EARLY_STOPPING_ROUNDS rounds (at most MAX_ROUNDS); ROUNDS when a fit has one cutoff only
MAX_ROUNDS = 1_000
EARLY_STOPPING_ROUNDS = 30
ROUNDS = 300

PAIR_FEATURES = [
    "purchase_days",
    "days_since_purchase",
    "days_since_view",
    "days_since_cart",
    "views_in_browse_window",
    "pair_weight",
    "own_interval",
    "typical_interval",
    "cycle_ratio",
    "touch_interval",
    "touch_cycle_ratio",
    "touch_due_in",
    "category_affinity",
    "brand_affinity",
    "brand_share_in_category",
    "price_ratio",
    "price_tier_distance",
    "viewed_price_tier_distance",
    "category_popularity_share",
    "category_viewer_share",
    "product_buyers_7d",
    "product_buyers_28d",
    "product_trend",
    "customer_recency",
    "customer_purchase_days",
    "customer_tenure",
    "customer_products_bought",
]
# what the candidates carry: every generator's score and rank
GENERATOR_FEATURES = [f"{g}_{part}" for g in GENERATORS for part in ("score", "rank")]
FEATURES = GENERATOR_FEATURES + PAIR_FEATURES

# chosen on the windows before the test window, never on it nor on the held-out future
# (docs/ml.md); the number of trees is chosen in every fit on its own newest training cutoff
# (`choose_rounds`). Deterministic, histograms built column-wise: left to itself LightGBM
# times both layouts on the first round and takes the faster, so a busy machine could fit
# another model from the same rows.
# The L2 penalty on the leaves' values ranked better on `all` on each of the five windows
# before the test window it was tried on (docs/ml_log.md): at the demo's size the ranker
# still gains from more groups, and the penalty shrinks leaves that rest on few of them
LGBM_PARAMS = {
    "objective": "lambdarank",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
    "lambda_l2": 10.0,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "n_jobs": 2,
    "deterministic": True,
    "force_col_wise": True,
    "verbose": -1,
}


class NotEnoughHistory(ValueError):
    """No earlier cutoff has both history before it and purchases in the window after it."""


# the daily rows' columns a snapshot reads
SNAPSHOT_COLUMNS = ["customer_id", "product_id", "views", "adds_to_cart", "purchases", "weight"]
# what a snapshot knows per (customer, product) and per customer (`snapshot_statistics`), with
# their types; day columns are day numbers (days since 1970-01-01), NaN where there is none
PAIR_STATISTICS = (
    "customer_id",
    "product_id",
    "purchase_days",
    "first_purchase",
    "last_purchase",
    "last_view",
    "last_cart",
    "last_touch",
    "touch_interval",
    "browse_score",
    "views_in_browse_window",
    "pair_weight",
    "own_interval",
)
CUSTOMER_STATISTICS = (
    "customer_recency",
    "customer_purchase_days",
    "customer_tenure",
    "customer_products_bought",
    "price_level",
    "price_tier_level",
    "viewed_price_tier_level",
)
STATISTICS = {
    name: "int64" if name.endswith("_id") else "float64"
    for name in (*PAIR_STATISTICS, *CUSTOMER_STATISTICS)
}


@dataclass(frozen=True)
class Catalogue:
    """What the ranker knows of products (product_id, category, brand, price, optionally name
    and subcategory: price tiers are within the subcategory when there is one) and customers
    (customer id -> city)."""

    products: pd.DataFrame
    cities: pd.Series

    @cached_property
    def content(self) -> ContentBased:
        """The content model of these products with its similarity computed once for every
        cutoff (it depends on the catalogue alone); generators fit copies of it."""
        return ContentBased(self.products).with_similarity()

    @cached_property
    def city_of(self) -> dict[int, str]:
        """customer id -> city, for reasons (a dict: scoring threads read it at once)."""
        return {int(c): city for c, city in self.cities.items() if isinstance(city, str)}

    @property
    def names(self) -> pd.Series:
        """product id -> name, for reasons (empty without names)."""
        if "name" not in self.products:
            return pd.Series(dtype=object)
        return self.products.set_index("product_id")["name"]


def _history(rows: pd.DataFrame, day: int) -> dict[str, npt.NDArray]:
    """The daily rows of days up to `day` (a day number), the columns a snapshot reads and
    their `day`, as arrays sorted by customer (stable: each customer's rows keep their order)."""
    days = day_numbers(rows["interaction_date"])
    keep = np.flatnonzero(days <= day)
    keep = keep[np.argsort(rows["customer_id"].to_numpy()[keep], kind="stable")]
    return {
        **{name: rows[name].to_numpy()[keep] for name in SNAPSHOT_COLUMNS},
        "day": days[keep],
    }


def _frame(history: Mapping[str, npt.NDArray], day: int, positions: npt.ArrayLike) -> pd.DataFrame:
    """The `history` rows at `positions` as a frame, with their `age` in days at `day`."""
    frame = pd.DataFrame({name: values[positions] for name, values in history.items()})
    return frame.assign(age=day - frame["day"])


def _pair_statistics(h: pd.DataFrame) -> pd.DataFrame:
    """Every per-(customer, product) statistic of the rows `h` (from `_frame`), one row per
    pair sorted by both, NaN where a pair has no such day. Grouped by one sort of an integer
    key: pandas' groupby of the same rows held about three copies of them at once."""
    customer = h["customer_id"].to_numpy(np.int64)
    product = h["product_id"].to_numpy(np.int64)
    span = int(product.max()) + 1 if len(product) else 1
    key = customer * span + product
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else key[:0]

    def column(name: str) -> npt.NDArray:
        return h[name].to_numpy()[order]

    def per_pair(ufunc: np.ufunc, values: npt.NDArray) -> npt.NDArray[np.float64]:
        return ufunc.reduceat(values, starts).astype(np.float64) if len(starts) else np.empty(0)

    def day_of(ufunc: np.ufunc, which: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        """The first (minimum) or last (maximum) day of the pair's `which` rows, NaN if none."""
        none = np.inf if ufunc is np.minimum else -np.inf
        out = per_pair(ufunc, np.where(which, day, none))
        return np.where(np.isinf(out), np.nan, out)

    day, age = column("day").astype(np.float64), column("age")
    views, adds = column("views"), column("adds_to_cart")
    purchased, recent = column("purchases") > 0, age < BROWSE_DAYS
    touched = purchased | (views > 0) | (adds > 0)
    browsed = per_pair(np.add, recent) > 0
    purchase_days = per_pair(np.add, purchased)
    touch_days = per_pair(np.add, touched)
    first_touch, last_touch = day_of(np.minimum, touched), day_of(np.maximum, touched)
    browse = (views + 3 * adds) * np.exp2(-age / BROWSE_HALF_LIFE_DAYS)
    pairs = pd.DataFrame(
        {
            "customer_id": key[starts] // span,
            "product_id": key[starts] % span,
            "purchase_days": np.where(purchase_days > 0, purchase_days, np.nan),
            "first_purchase": day_of(np.minimum, purchased),
            "last_purchase": day_of(np.maximum, purchased),
            "last_view": day_of(np.maximum, views > 0),
            "last_cart": day_of(np.maximum, adds > 0),
            "last_touch": last_touch,
            "touch_interval": _mean_interval(touch_days, first_touch, last_touch),
            "browse_score": np.where(
                browsed, per_pair(np.add, np.where(recent, browse, 0)), np.nan
            ),
            "views_in_browse_window": np.where(
                browsed, per_pair(np.add, np.where(recent, views, 0)), np.nan
            ),
            "pair_weight": per_pair(np.add, column("weight") * np.exp2(-age / HALF_LIFE_DAYS)),
        }
    )
    pairs["own_interval"] = _mean_interval(
        pairs["purchase_days"], pairs["first_purchase"], pairs["last_purchase"]
    )
    return pairs


def _mean_interval(days: npt.ArrayLike, first: npt.ArrayLike, last: npt.ArrayLike) -> npt.NDArray:
    """A pair's mean days between the `days` days it was bought (or touched) on, from the first
    to the last: NaN on fewer than two."""
    days, first, last = (np.asarray(v, dtype=np.float64) for v in (days, first, last))
    with np.errstate(invalid="ignore"):
        return np.where(days >= 2, (last - first) / np.maximum(days - 1, 1), np.nan)


def _recent_viewers(
    customers: npt.NDArray[np.int64], products: npt.NDArray[np.int64], days: npt.NDArray, c: int
) -> pd.Series:
    """Per product id, how many customers viewed it in the `POPULAR_DAYS` up to day `c`, of
    the view rows given (customer, product, day number)."""
    recent = (days > c - POPULAR_DAYS) & (days <= c)
    pairs = pd.DataFrame({"product_id": products[recent], "customer_id": customers[recent]})
    return pairs.drop_duplicates()["product_id"].value_counts()


class Snapshot:
    """Everything known at the end of `cutoff` from the daily rows up to it (rows after it are
    dropped here): per product, figures of every customer of `daily`; per customer and per
    (customer, product), `of(customers)`, from the rows of `histories` when given (the rows of
    the customers a training cutoff needs: a sample). Only the rows are kept, sorted by
    customer, and a batch's statistics are computed when it is asked for: every customer's
    at once held several times the rows in memory (the peak at 1 M customers fell by 4.3 GB).
    Given `statistics` (`snapshot_statistics` of the customers it will be asked about, as of
    `cutoff`), a batch's are a slice of them and no rows are kept."""

    def __init__(
        self,
        daily: pd.DataFrame,
        cutoff: dt.date,
        catalogue: Catalogue,
        histories: pd.DataFrame | None = None,
        statistics: pd.DataFrame | None = None,
    ) -> None:
        self.cutoff = cutoff
        self.catalogue = catalogue
        self._day = c = day_number(cutoff)
        self._facts: dict[bytes, CustomerFacts] = {}
        # the customers' statistics computed ahead (`snapshot_statistics`, e.g. the Spark
        # step's gold.customer_product_features): a batch is a slice of them, no rows are kept
        self._statistics = None if statistics is None else _sorted_statistics(statistics)
        self._history = None
        if statistics is None:
            self._history = _history(daily if histories is None else histories, c)

        if statistics is None and histories is None:
            bought = np.flatnonzero(self._history["purchases"] > 0)
            sold = _frame(self._history, c, bought)
            rows = np.flatnonzero(self._history["views"] > 0)
            viewers = _recent_viewers(
                *(self._history[n][rows] for n in ("customer_id", "product_id", "day")), c
            )
        else:
            sold = daily[daily["purchases"] > 0]
            sold = _frame(_history(sold, c), c, slice(None))
            rows = np.flatnonzero(daily["views"].to_numpy() > 0)
            viewers = _recent_viewers(
                daily["customer_id"].to_numpy()[rows],
                daily["product_id"].to_numpy()[rows],
                day_numbers(daily["interaction_date"].iloc[rows]),
                c,
            )
        products = product_prices(catalogue.products)
        # every customer's interval between purchases of a product, from their purchase days
        intervals = _pair_statistics(sold)[["product_id", "own_interval"]]
        products = products.assign(
            typical_interval=intervals.groupby("product_id")["own_interval"].median(),
            product_buyers_7d=sold[sold["age"] < 7].groupby("product_id")["customer_id"].nunique(),
            product_buyers_28d=sold[sold["age"] < POPULAR_DAYS]
            .groupby("product_id")["customer_id"]
            .nunique(),
        )
        products[["product_buyers_7d", "product_buyers_28d"]] = products[
            ["product_buyers_7d", "product_buyers_28d"]
        ].fillna(0)
        # last week against the weekly average of the four: > 1 rising, < 1 falling
        products["product_trend"] = (products["product_buyers_7d"] + 1) / (
            products["product_buyers_28d"] / 4 + 1
        )
        buyers = products.groupby("category")["product_buyers_28d"].transform("sum")
        products["category_popularity_share"] = (products["product_buyers_28d"] / buyers).fillna(0)
        # the same share among viewers: several times the rows, so less noise for fewer sales
        viewers = viewers.reindex(products.index, fill_value=0)
        in_category = viewers.groupby(products["category"]).transform("sum")
        products["category_viewer_share"] = (viewers / in_category).fillna(0)
        self.products = _with_codes(products)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_facts": {}}  # stored models carry no batch's statistics

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"_statistics": None, **state})  # stored before statistics existed
        if "category_code" not in self.products:  # stored before the codes existed
            self.products = _with_codes(self.products)

    def of(self, customers: npt.ArrayLike) -> CustomerFacts:
        """The per-customer and per-pair statistics of these customers (the last few batches
        asked for are kept: proposing and ranking a batch ask twice)."""
        customers = np.unique(np.asarray(customers, dtype=np.int64))
        key = customers.tobytes()
        cached = self._facts  # one read and one rebinding: safe from scoring threads
        if key in cached:
            return cached[key]
        if self._statistics is None:
            positions = _rows(self._history["customer_id"], customers)
            h = _frame(self._history, self._day, positions)
            pairs, per_customer = customer_statistics(h, self.products, self._day)
        else:
            positions = _rows(self._statistics["customer_id"].to_numpy(np.int64), customers)
            pairs, per_customer = _split_statistics(self._statistics.iloc[positions])
        facts = CustomerFacts(pairs, per_customer, self.products)
        self._facts = {**dict(list(cached.items())[-(FACTS_KEPT - 1) :]), key: facts}
        return facts


def customer_statistics(
    h: pd.DataFrame, products: pd.DataFrame, c: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The statistics of some customers' rows `h` (from `_frame`) at the end of day `c`: per
    (customer, product), sorted by both (`_pair_statistics`), and per customer (indexed by
    id), with the `products`' prices and price tiers (`product_prices`)."""
    bought = h[h["purchases"] > 0]
    with_price = bought.merge(products["price"], left_on="product_id", right_index=True, how="left")
    # views sample a customer's price level more often than purchases do (5 to 1 in the demo)
    viewed = h[h["views"] > 0]
    viewed_tier = viewed["product_id"].map(products["price_tier"])
    view_weight = viewed["views"].astype(np.float64).where(viewed_tier.notna(), 0.0)
    customers = pd.DataFrame(
        {
            "customer_recency": c - bought.groupby("customer_id")["day"].max(),
            "customer_purchase_days": bought.groupby("customer_id")["day"].nunique(),
            "customer_tenure": c - h.groupby("customer_id")["day"].min(),
            "customer_products_bought": bought.groupby("customer_id")["product_id"].nunique(),
            "price_level": with_price.groupby("customer_id")["price"].mean(),
            "price_tier_level": bought["product_id"]
            .map(products["price_tier"])
            .groupby(bought["customer_id"])
            .mean(),
            "viewed_price_tier_level": (viewed_tier * view_weight)
            .groupby(viewed["customer_id"])
            .sum()
            / view_weight.groupby(viewed["customer_id"]).sum(),
        }
    )
    customers.index.name = "customer_id"
    return _pair_statistics(h), customers


def product_prices(products: pd.DataFrame) -> pd.DataFrame:
    """(category, brand, price, price_tier) per product id of a catalogue's `products`: where
    a product's price sits among its peers (its subcategory, else its category), the log of
    its price over their median (0 = the usual price of such products)."""
    catalog = products.set_index("product_id")
    peers = catalog["subcategory"] if "subcategory" in catalog else catalog["category"]
    price = catalog["price"].astype(np.float64).where(lambda p: p > 0)
    return catalog[["category", "brand", "price"]].assign(
        price_tier=np.log(price / price.groupby(peers).transform("median"))
    )


def snapshot_statistics(
    rows: pd.DataFrame, products: pd.DataFrame, days: Mapping[dt.date, int | None]
) -> pd.DataFrame:
    """What a snapshot at the end of each of `days` knows of the customers of the daily `rows`
    (every row of each; later rows are dropped), with the catalogue's `products`: one row per
    day (`as_of`) and (customer, product) with the pair's statistics and its customer's
    (`STATISTICS`). A day maps to None for every customer, or to a number of days n for the
    customers who buy in the n days after it only (a training cutoff's buyers: the only ones
    its snapshot is asked about). Computed for groups of customers apart and stacked, a day's
    rows are what `Snapshot(..., statistics=...)` takes: the Spark step of
    gold.customer_product_features runs it per group of customers."""
    prices = product_prices(products)
    if rows["interaction_date"].dtype.kind != "M":  # Spark hands dates over as date objects:
        # made datetime64 once, so each day's day numbers below are a cast, not a parse
        rows = rows.assign(interaction_date=pd.to_datetime(rows["interaction_date"]))
    # one order of each pair's rows whatever order they come in: its sums are the same to the bit
    rows = rows.sort_values(["customer_id", "product_id", "interaction_date"], kind="stable")
    out = []
    for day, window in days.items():
        c = day_number(day)
        mine = rows
        if window is not None:
            buyers = labels(rows, day, window)["customer_id"].unique()
            mine = rows[rows["customer_id"].isin(buyers)]
        history = _history(mine, c)
        pairs, customers = customer_statistics(_frame(history, c, slice(None)), prices, c)
        frame = pairs.merge(customers, left_on="customer_id", right_index=True, how="left")
        out.append(frame[list(STATISTICS)].assign(as_of=day))
    if not out:
        return pd.DataFrame(columns=[*STATISTICS, "as_of"])
    return pd.concat(out, ignore_index=True)


def _sorted_statistics(statistics: pd.DataFrame) -> pd.DataFrame:
    """`snapshot_statistics` rows sorted by customer and product, in its columns and types;
    copied only where they are not yet (every customer's of a day can be gigabytes)."""
    missing = sorted(set(STATISTICS) - set(statistics.columns))
    if missing:
        raise ValueError(f"snapshot statistics lack the columns {', '.join(missing)}")
    frame = statistics
    if list(frame.columns) != list(STATISTICS):
        frame = frame[list(STATISTICS)]
    frame = frame.astype(STATISTICS, copy=False)
    customer = frame["customer_id"].to_numpy()
    product = frame["product_id"].to_numpy()
    ordered = (customer[1:] > customer[:-1]) | (
        (customer[1:] == customer[:-1]) & (product[1:] > product[:-1])
    )
    if not ordered.all():
        return frame.sort_values(["customer_id", "product_id"], kind="stable", ignore_index=True)
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        frame = frame.reset_index(drop=True)
    return frame


def _split_statistics(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`snapshot_statistics` rows back into the pair and the customer statistics."""
    pairs = rows[list(PAIR_STATISTICS)].reset_index(drop=True)
    customers = rows.drop_duplicates("customer_id").set_index("customer_id")
    return pairs, customers[list(CUSTOMER_STATISTICS)]


class CustomerFacts:
    """Per (customer, product) and per customer statistics of some customers at a snapshot's
    cutoff (`customer_statistics`), with the snapshot's `products`: their category and brand
    shares, and lookups of pairs."""

    def __init__(
        self, pairs: pd.DataFrame, customers: pd.DataFrame, products: pd.DataFrame
    ) -> None:
        self.pairs = pairs  # sorted by (customer, product)
        self.customers = customers
        self._span = int(pairs["product_id"].max()) + 1 if len(pairs) else 1
        self._pair_keys = pairs["customer_id"].to_numpy(np.int64) * self._span + pairs[
            "product_id"
        ].to_numpy(np.int64)
        self.category_share, self.brand_share, self.brand_share_in_category = _shares(
            pairs, products
        )

    def pair_stats(self, customers: npt.ArrayLike, products: npt.ArrayLike) -> pd.DataFrame:
        """The `pairs` columns (without the ids) of each (customer, product), NaN where the
        customer never took the product, in the order given."""
        customers = np.asarray(customers, dtype=np.int64)
        products = np.asarray(products, dtype=np.int64)
        columns = [c for c in self.pairs.columns if c not in ("customer_id", "product_id")]
        if not len(self.pairs):
            return pd.DataFrame(np.nan, index=range(len(customers)), columns=columns)
        pos, found = _positions(self._pair_keys, customers * self._span + products)
        missing = (products >= self._span) | ~found
        out = {}
        for column in columns:
            values = self.pairs[column].to_numpy(np.float64)[pos]
            values[missing] = np.nan
            out[column] = values
        return pd.DataFrame(out)


def _with_codes(products: pd.DataFrame) -> pd.DataFrame:
    """`products` with integer codes of their category and brand (-1: none). The customers'
    shares key on them: hashing the names took about a tenth of scoring. The codes sort as
    the names do, so ties among categories break as they did with the names."""
    codes = {f"{c}_code": pd.factorize(products[c], sort=True)[0] for c in ("category", "brand")}
    return products.assign(**codes)


def _shares(pairs: pd.DataFrame, products: pd.DataFrame) -> tuple[Shares, Shares, Shares]:
    """Of each customer's weight (`pairs`, sorted by customer), the share in each category, in
    each brand, and of what they took in a category, the share of each brand. Pairs of products
    outside `products` count in none."""
    customer = pairs["customer_id"].to_numpy(np.int64)
    where = products.index.get_indexer(pairs["product_id"].to_numpy(np.int64))
    known = where >= 0
    customer, where = customer[known], where[known]
    weight = pairs["pair_weight"].to_numpy(np.float64)[known]
    ids, place = np.unique(customer, return_inverse=True)
    total = np.bincount(place, weights=weight)[place]
    # a customer whose weights are all 0 has no share anywhere (0, as pandas' sum of NaNs)
    share = np.divide(weight, total, out=np.zeros_like(weight), where=total > 0)
    category = products["category_code"].to_numpy(np.int64)
    brand = products["brand_code"].to_numpy(np.int64)
    spans = [int(category.max(initial=-1)) + 2, int(brand.max(initial=-1)) + 2]
    category, brand = category[where], brand[where]
    has_category, has_brand = category >= 0, brand >= 0
    of_category = Shares.summed(ids, place, share, has_category, spans[:1], category)
    of_brand = Shares.summed(ids, place, share, has_brand, spans[1:], brand)
    both = has_category & has_brand
    in_category = Shares.summed(ids, place, share, both, spans, category, brand)
    customers, categories, _ = in_category.unpacked()
    in_category.values = in_category.values / of_category.lookup(customers, categories)
    return of_category, of_brand, in_category


class Shares:
    """A share per (customer, code...) held (category; brand; category and brand): each key
    packed into one integer (the customer's place among `ids`, then each code + 1, so -1 packs
    too), sorted, and looked up by binary search. pandas' MultiIndex groupby and lookups took
    about a tenth of scoring a batch at 1 M customers."""

    def __init__(
        self,
        ids: npt.NDArray[np.int64],
        spans: list[int],
        keys: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
    ) -> None:
        self.ids = ids  # the customers, sorted
        self.spans = spans  # each code level's codes, with -1
        self.keys = keys
        self.values = values

    @classmethod
    def summed(
        cls,
        ids: npt.NDArray[np.int64],
        place: npt.NDArray[np.intp],
        share: npt.NDArray[np.float64],
        rows: npt.NDArray[np.bool_],
        spans: list[int],
        *codes: npt.NDArray[np.int64],
    ) -> Shares:
        """The `share` of the `rows` summed per (customer at `place` among `ids`, codes)."""
        if len(ids) * math.prod(spans) >= 2**62:
            raise OverflowError(
                f"{len(ids):,} customers × codes {spans} do not pack into one integer: "
                "score fewer customers at a time"
            )
        key = cls._pack(place[rows], [c[rows] for c in codes], spans)
        keys, inverse = np.unique(key, return_inverse=True)
        return cls(ids, spans, keys, np.bincount(inverse, weights=share[rows], minlength=len(keys)))

    def __len__(self) -> int:
        return len(self.keys)

    @staticmethod
    def _pack(
        place: npt.NDArray[np.integer], codes: list[npt.NDArray[np.int64]], spans: list[int]
    ) -> npt.NDArray[np.int64]:
        out = place.astype(np.int64)
        for code, span in zip(codes, spans, strict=True):
            out = out * span + (code + 1)
        return out

    def unpacked(self) -> tuple[npt.NDArray[np.int64], ...]:
        """The held keys as arrays: the customer ids, then each level's codes."""
        rest, codes = self.keys, []
        for span in reversed(self.spans):
            rest, code = np.divmod(rest, span)
            codes.insert(0, code - 1)
        return (self.ids[rest], *codes)

    def lookup(self, customers: npt.ArrayLike, *codes: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The share of each (customer, codes...) row, 0 where none is held."""
        customers = np.asarray(customers, dtype=np.int64)
        if not len(self.keys):
            return np.zeros(len(customers))
        place, found = _positions(self.ids, customers)
        asked = [np.asarray(c, dtype=np.int64) for c in codes]
        for code, span in zip(asked, self.spans, strict=True):
            found &= (code >= -1) & (code < span - 1)
        pos, held = _positions(self.keys, np.where(found, self._pack(place, asked, self.spans), 0))
        return np.where(found & held, self.values[pos], 0.0)


def _positions(
    sorted_keys: npt.NDArray[np.int64], keys: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """Where each of `keys` is, or would be, in the non-empty `sorted_keys`, and whether it
    is there."""
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return pos, sorted_keys[pos] == keys


def _rows(ids: npt.NDArray[np.int64], wanted: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Positions in the sorted `ids` of the entries equal to one of `wanted` (sorted, unique)."""
    return _matches(ids, wanted)[0]


def _matches(
    ids: npt.NDArray[np.int64], wanted: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Positions in the sorted `ids` of the entries equal to each of `wanted` in turn (the
    rows an inner merge pairs with it, in its order), and how many each of `wanted` has."""
    starts = np.searchsorted(ids, wanted, "left")
    lengths = np.searchsorted(ids, wanted, "right") - starts
    first = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return first + np.arange(int(lengths.sum())), lengths


def threaded(
    work: Callable[[npt.NDArray[np.int64]], pd.DataFrame],
    batches: list[npt.NDArray[np.int64]],
    workers: int | None = None,
) -> list[pd.DataFrame]:
    """`work` of each batch, in order, on `workers` threads (default `SCORING_WORKERS`):
    numpy's partitions, scipy's sparse products and LightGBM's predict release the GIL.
    A few customers go through `work` alone first: pandas builds an index's lookup engine on
    first use, and two threads building it at once can see it half-built ("cannot handle a
    non-unique multi-index!" from a unique one)."""
    if len(batches) <= 1:
        return [work(b) for b in batches]
    work(batches[0][:WARM_UP_CUSTOMERS])
    with ThreadPoolExecutor(min(workers or SCORING_WORKERS, len(batches))) as pool:
        return list(pool.map(work, batches))


class Generators:
    """The candidate generators fitted on the daily rows up to the snapshot's cutoff;
    `propose(customers)` returns their union, one row per (customer, product) with every
    generator's score and rank (NaN where a generator did not propose the product)."""

    def __init__(
        self, daily: pd.DataFrame, snapshot: Snapshot, per_generator: int = PER_GENERATOR
    ) -> None:
        self.snapshot = snapshot
        self.per_generator = per_generator
        self._proposed: dict[bytes, pd.DataFrame] = {}
        items = snapshot.products.index.to_numpy(np.int64)
        known = day_numbers(daily["interaction_date"]) <= day_number(snapshot.cutoff)
        history = daily if known.all() else daily[known]  # the serving round's: every row
        self.models: dict[str, Recommender] = {}
        if len(history):
            train = decayed(history, snapshot.cutoff, HALF_LIFE_DAYS, item_ids=items)
            as_of = np.datetime64(snapshot.cutoff, "s") + np.timedelta64(86_399, "s")
            self.models = {
                "item_knn": ItemKNN(neighbours=50, metric="jaccard").fit(train),
                # 25 neighbours, not 50: the same NDCG@10 on validation for less of the
                # scoring's largest part (docs/ml.md, 2026-12-06)
                "user_knn": UserKNN(neighbours=25).fit(train),
                "als": ALS(factors=64, iterations=ALS_ITERATIONS, num_threads=2).fit(train),
                "bought_with": BoughtWith().fit(
                    decayed(
                        history[history["purchases"] > 0],
                        snapshot.cutoff,
                        HALF_LIFE_DAYS,
                        item_ids=items,
                    )
                ),
                "content": copy.copy(snapshot.catalogue.content).fit(train),
                "trending_city": Trending(groups=snapshot.catalogue.cities, as_of=as_of).fit(train),
                "ease": EASE().fit(train),
            }

    def propose(self, customers: npt.ArrayLike) -> pd.DataFrame:
        customers = np.unique(np.asarray(customers, dtype=np.int64))
        # the ranker and each generator alone are scored on the same customers (one set per
        # task): the last two sets are kept
        key = customers.tobytes()
        cached = self._proposed  # one read and one rebinding: safe from scoring threads
        if key in cached:
            return cached[key]
        batches = [
            customers[i : i + SCORING_BATCH] for i in range(0, len(customers), SCORING_BATCH)
        ] or [customers]
        parts = threaded(self._propose, batches)
        proposed = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        self._proposed = {**dict(list(cached.items())[-1:]), key: proposed}
        return proposed

    def __getstate__(self) -> dict:
        # stored models carry no cached candidates nor best sellers (derived on first use)
        state = {k: v for k, v in self.__dict__.items() if k != "_best_sellers"}
        return {**state, "_proposed": {}}

    def __setstate__(self, state: dict) -> None:
        # best sellers stored by earlier versions are keyed on names: derived again
        self.__dict__.update({k: v for k, v in state.items() if k != "_best_sellers"})

    def _propose(self, customers: npt.NDArray[np.int64]) -> pd.DataFrame:
        snap, n = self.snapshot, self.per_generator
        facts = snap.of(customers)
        mine = facts.pairs
        bought = mine[mine["purchase_days"] > 0]
        since = day_number(snap.cutoff) - bought["last_purchase"]
        interval = bought["own_interval"].fillna(
            bought["product_id"].map(snap.products["typical_interval"])
        )
        lists = {
            # times bought, the latest purchase first among equals
            "buy_again": bought.assign(
                score=bought["purchase_days"] + bought["last_purchase"] / 1e6
            ),
            "repurchase_due": bought.assign(score=(since / interval).fillna(0.0)),
            "browsed": mine[mine["purchase_days"].isna() & mine["browse_score"].gt(0)].assign(
                score=lambda f: f["browse_score"]
            ),
        }
        frames = [
            _top(frame[["customer_id", "product_id", "score"]], n, name)
            for name, frame in lists.items()
        ]
        for name, model in self.models.items():
            # a model's lists are already its top n in order, each slot's rank
            recs = model.recommend(customers, n, exclude_seen=False).to_frame()
            frames.append(recs.assign(generator=name))
        top = snap.products["product_buyers_28d"].nlargest(n)
        top = top[top > 0]
        popular = pd.DataFrame(  # the same list, best first, for everyone
            {
                "customer_id": np.repeat(customers, len(top)),
                "product_id": np.tile(top.index.to_numpy(np.int64), len(customers)),
                "score": np.tile(top.to_numpy(np.float64), len(customers)),
                "rank": np.tile(np.arange(1, len(top) + 1), len(customers)),
                "generator": "popular",
            }
        )
        frames.append(popular)
        frames.append(_top(self._category_favourites(facts), n, "category_favourites"))
        return _union(frames)

    def _category_favourites(self, facts: CustomerFacts) -> pd.DataFrame:
        """The best sellers of each category the customer took, scored by the customer's share
        of the category times the product's share of its buyers, their brands first."""
        shares = facts.category_share  # by (customer, category)
        sellers = self._best_sellers  # by category
        customers, category = shares.unpacked()
        # each share with its category's best sellers (a merge's rows, in its order)
        seller, count = _matches(sellers["category_code"].to_numpy(np.int64), category)
        share = np.repeat(np.arange(len(shares)), count)
        customer = customers[share]
        brand = sellers["brand_code"].to_numpy(np.int64)[seller]
        affinity = facts.brand_share_in_category.lookup(customer, category[share], brand)
        popularity = sellers["category_popularity_share"].to_numpy(np.float64)[seller]
        return pd.DataFrame(
            {
                "customer_id": customer,
                "product_id": sellers["product_id"].to_numpy(np.int64)[seller],
                "score": shares.values[share] * popularity * (1 + affinity),
            }
        )

    @cached_property
    def _best_sellers(self) -> pd.DataFrame:
        """(category_code, product_id, brand_code, category_popularity_share): each category's
        `per_generator` best sellers of the last `POPULAR_DAYS` days."""
        products = self.snapshot.products
        sold = products[products["product_buyers_28d"] > 0].reset_index()
        sold = sold[sold["category_code"] >= 0]
        sold = sold.sort_values(["category_code", "product_buyers_28d"], ascending=[True, False])
        top = sold.groupby("category_code").head(self.per_generator)
        return top[["category_code", "product_id", "brand_code", "category_popularity_share"]]


def _union(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per proposed (customer, product), sorted, with every generator's score and
    rank (NaN where it did not propose the product); each frame is one generator's top list
    (customer_id, product_id, score, rank, generator), a pair at most once."""
    customer = np.concatenate([f["customer_id"].to_numpy(np.int64) for f in frames])
    product = np.concatenate([f["product_id"].to_numpy(np.int64) for f in frames])
    # one integer per pair (ids are non-negative), so the union is a sort, not a pivot
    span = int(product.max()) + 1 if len(product) else 1
    keys, row = np.unique(customer * span + product, return_inverse=True)
    values = np.full((len(keys), 2 * len(GENERATORS)), np.nan)
    start = 0
    for frame in frames:
        end = start + len(frame)
        if len(frame):
            g = GENERATORS.index(frame["generator"].iloc[0])
            values[row[start:end], 2 * g] = frame["score"].to_numpy(np.float64)
            values[row[start:end], 2 * g + 1] = frame["rank"].to_numpy(np.float64)
        start = end
    out = pd.DataFrame(values, columns=GENERATOR_FEATURES)
    out.insert(0, "product_id", keys % span)
    out.insert(0, "customer_id", keys // span)
    return out


def _top(frame: pd.DataFrame, n: int, generator: str) -> pd.DataFrame:
    """The n best of each customer by score, with their rank (1 = best); among equal scores
    the first in `frame` (numpy's stable sort: pandas' sort and group count took 10 ms a
    generator for 2,000 customers). Where the frame's rows are grouped by customer, only
    those at or above the customer's n-th score are sorted (the category favourites of
    2,000 customers: 216,000 rows, 3× faster)."""
    customer = frame["customer_id"].to_numpy(np.int64)
    score = frame["score"].to_numpy(np.float64)
    rows = np.arange(len(frame))
    if len(frame) > n and (customer[1:] >= customer[:-1]).all() and not np.isnan(score).any():
        group = np.concatenate([[0], np.cumsum(customer[1:] != customer[:-1])])
        rows = np.flatnonzero(score >= kth_of_packed(group, score, int(group[-1]) + 1, n)[group])
    order = rows[np.lexsort((-score[rows], customer[rows]))]  # NaN last
    rank = place_in_run(customer[order]) + 1
    keep = rank <= n
    return frame.iloc[order[keep]].assign(rank=rank[keep], generator=generator)


def features(snapshot: Snapshot, candidates: pd.DataFrame) -> pd.DataFrame:
    """`candidates` (customer_id, product_id, generator scores and ranks) with every feature
    of `FEATURES`, from the snapshot alone (assembled column by column: no joins)."""
    c = day_number(snapshot.cutoff)
    customer = candidates["customer_id"].to_numpy(np.int64)
    product = candidates["product_id"].to_numpy(np.int64)
    out = {name: candidates[name].to_numpy() for name in candidates.columns}
    facts = snapshot.of(customer)
    for lookup in (
        facts.pair_stats(customer, product),
        snapshot.products.reindex(product),
        facts.customers.reindex(customer),
    ):
        out.update({name: lookup[name].to_numpy() for name in lookup.columns})
    out["purchase_days"] = np.nan_to_num(out["purchase_days"])
    out["days_since_purchase"] = c - out["last_purchase"]
    out["days_since_view"] = c - out["last_view"]
    out["days_since_cart"] = c - out["last_cart"]
    # a regular's visits for a product (viewed, carted or bought) keep its rhythm even when a
    # visit buys nothing: the days until the next is due, and the time since over the interval
    since_touch = c - out["last_touch"]
    out["touch_due_in"] = out["touch_interval"] - since_touch
    interval = np.where(np.isnan(out["own_interval"]), out["typical_interval"], out["own_interval"])
    with np.errstate(divide="ignore", invalid="ignore"):
        out["cycle_ratio"] = np.where(interval > 0, out["days_since_purchase"] / interval, np.nan)
        touch = out["touch_interval"]
        out["touch_cycle_ratio"] = np.where(touch > 0, since_touch / touch, np.nan)
        price = out["price"].astype(np.float64)
        out["price_ratio"] = np.log(np.where(price > 0, price, np.nan) / out["price_level"])
    out["price_tier_distance"] = np.abs(out["price_tier"] - out["price_tier_level"])
    out["viewed_price_tier_distance"] = np.abs(out["price_tier"] - out["viewed_price_tier_level"])
    # products outside the catalogue have no codes (NaN): -1, never a customer's share
    category, brand = (np.nan_to_num(out[f"{c}_code"], nan=-1) for c in ("category", "brand"))
    out["category_affinity"] = facts.category_share.lookup(customer, category)
    out["brand_affinity"] = facts.brand_share.lookup(customer, brand)
    out["brand_share_in_category"] = facts.brand_share_in_category.lookup(customer, category, brand)
    return pd.DataFrame(out, copy=False)  # the arrays as they are: one block would copy them all


def feature_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """The `FEATURES` columns as one float32 block: what LightGBM trains and predicts on (half
    the memory of float64; its histogram bins need no more precision), filled column by
    column (selecting the columns first would copy them as float64) into a column-major
    block: pandas keeps it as it is, and the writes are contiguous (2.6× faster)."""
    matrix = np.empty((len(frame), len(FEATURES)), dtype=np.float32, order="F")
    for j, name in enumerate(FEATURES):
        matrix[:, j] = frame[name].to_numpy()
    return pd.DataFrame(matrix, columns=FEATURES, copy=False)


def labels(daily: pd.DataFrame, after: dt.date, days: int) -> pd.DataFrame:
    """(customer_id, product_id) bought in the `days` after `after`."""
    day, start = day_numbers(daily["interaction_date"]), day_number(after)
    inside = (day > start) & (day <= start + days) & (daily["purchases"] > 0).to_numpy()
    return daily.loc[inside, ["customer_id", "product_id"]].drop_duplicates()


def _hits(pairs: pd.DataFrame, truth: pd.DataFrame) -> npt.NDArray[np.float64]:
    """1 where the (customer_id, product_id) of `pairs` is among `truth`'s, else 0."""
    return pairs.merge(truth.assign(_hit=1), how="left")["_hit"].fillna(0).to_numpy()


def _groups(
    matrix: pd.DataFrame, label: npt.NDArray, customer: npt.NDArray
) -> tuple[pd.DataFrame, npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """The rows (sorted by customer) of the customers with a hit among their candidates (the
    others teach LambdaMART nothing): their features, labels and group sizes."""
    keep = pd.Series(label).groupby(customer).transform("max").to_numpy() > 0
    sizes = np.unique(customer[keep], return_counts=True)[1]
    return matrix[keep].reset_index(drop=True), label[keep].astype(np.int32), sizes


@dataclass
class RankingData:
    """Query groups for LambdaMART: the feature block, graded labels, group sizes (rows of a
    group are contiguous) and each row's position on the page it was shown on
    (`NOT_SHOWN` for the purchase groups, whose candidates were never on a page)."""

    matrix: pd.DataFrame
    label: npt.NDArray[np.int32]
    groups: npt.NDArray[np.int64]
    position: npt.NDArray[np.int32]
    rows: pd.DataFrame | None = None  # feedback only: its rows in the matrix's order
    recall: dict[str, float] = field(default_factory=dict)  # purchases: candidate recall per cutoff
    newest: int = 0  # purchases: the groups at the end that are the newest cutoff's
    long_groups: int = 0  # purchases: the groups at the start labelled by the long window

    def split_newest(self) -> tuple[RankingData, RankingData]:
        """(every group but the newest cutoff's, the newest cutoff's groups)."""
        kept = len(self.groups) - self.newest
        rows = int(self.groups[:kept].sum())
        head, tail = slice(None, rows), slice(rows, None)
        return (
            RankingData(
                self.matrix.iloc[head], self.label[head], self.groups[:kept], self.position[head]
            ),
            RankingData(
                self.matrix.iloc[tail], self.label[tail], self.groups[kept:], self.position[tail]
            ),
        )

    def answers(self, request_ids: npt.ArrayLike) -> RankingData:
        """The groups of these answers (feedback data only), in the same order."""
        assert self.rows is not None
        keep = self.rows["request_id"].isin(request_ids).to_numpy()
        rows = self.rows[keep].reset_index(drop=True)
        _, sizes = np.unique(pd.factorize(rows["request_id"])[0], return_counts=True)
        return RankingData(
            self.matrix[keep].reset_index(drop=True),
            self.label[keep],
            sizes,
            self.position[keep],
            rows,
        )

    @staticmethod
    def concat(parts: list[RankingData]) -> RankingData:
        return RankingData(
            pd.concat([p.matrix for p in parts], ignore_index=True),
            np.concatenate([p.label for p in parts]),
            np.concatenate([p.groups for p in parts]),
            np.concatenate([p.position for p in parts]),
        )


def train(
    parts: list[RankingData], debias: bool, rounds: int | None = None, seed: int = 0
) -> lgb.Booster:
    """LambdaMART on the groups of every part with `rounds` trees (default: `choose_rounds`);
    `debias` learns a bias per position with the ranker (LightGBM's position-debiased
    lambdarank) instead of taking clicks at face value; `seed` seeds LightGBM's samples.
    One forest: three seeded apart and averaged ranked +0.0006 better on `all` and scored a
    fifth slower at 1 M customers, below the 5,000/s goal (docs/ml_log.md)."""
    import lightgbm as lgb

    if rounds is None:
        rounds, _ = choose_rounds(parts, debias, seed)
    params = {**LGBM_PARAMS, "random_state": seed}
    return lgb.train(params, _dataset(RankingData.concat(parts), debias), rounds)


def choose_rounds(
    parts: list[RankingData], debias: bool, seed: int = 0
) -> tuple[int, float | None]:
    """The number of trees, chosen from the fit's own past: trained without the purchase part's
    (the first's) newest training cutoff until NDCG@10 of that cutoff's groups has not improved
    for `EARLY_STOPPING_ROUNDS` rounds (LightGBM's early stopping), with that NDCG; `ROUNDS`
    and None when the purchase part has one cutoff only."""
    import lightgbm as lgb

    purchases, others = parts[0], parts[1:]
    if not 0 < purchases.newest < len(purchases.groups):
        return ROUNDS, None
    earlier, newest = purchases.split_newest()
    fit = _dataset(RankingData.concat([earlier, *others]), debias)
    stopped = lgb.train(
        {**LGBM_PARAMS, "random_state": seed, "metric": "ndcg", "eval_at": [10]},
        fit,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[_dataset(newest, debias, reference=fit)],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    return max(1, stopped.best_iteration), float(stopped.best_score["valid_0"]["ndcg@10"])


def _dataset(data: RankingData, debias: bool, reference: lgb.Dataset | None = None) -> lgb.Dataset:
    import lightgbm as lgb

    position = data.position if debias else None
    return lgb.Dataset(
        data.matrix, data.label, group=data.groups, position=position, reference=reference
    )


class CompiledForest:
    """The ranker's forest compiled to machine code with lleaves: the scores of LightGBM's
    `predict` (to ~1e-14) several times faster (docs/ml.md), after a compile of seconds to a
    minute. Compiled in the process that scores; never pickled."""

    def __init__(self, booster: lgb.Booster) -> None:
        import lleaves

        with tempfile.TemporaryDirectory(prefix="ranker-forest-") as folder:
            path = os.path.join(folder, "model.txt")
            booster.save_model(path)
            self.model = lleaves.Model(model_file=path)
            self.model.compile()

    def predict(self, matrix: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Scores of the rows; one thread (the scoring threads run in parallel)."""
        # row-major float64 in one copy (lleaves would otherwise cast, then copy again)
        return self.model.predict(np.ascontiguousarray(matrix.to_numpy(), np.float64), n_jobs=1)


def training_cutoffs(
    first: dt.date, as_of: dt.date, window_days: int, cutoffs: int = TRAINING_CUTOFFS
) -> list[dt.date]:
    """The ranker's training cutoffs before `as_of` (data from `first` on): half a window
    apart, each with a full label window before `as_of` and at least one window of history
    before it."""
    window = dt.timedelta(days=window_days)
    stride = dt.timedelta(days=max(1, window_days // 2))
    out = [as_of - window - stride * i for i in range(cutoffs)]
    return sorted(c for c in out if c - window >= first)


# snapshot statistics computed ahead: those of a day, of these customers (None: every customer),
# or None when that day was not computed (the snapshot then computes them from the rows)
StatisticsSource = Callable[[dt.date, "npt.NDArray[np.int64] | None"], "pd.DataFrame | None"]
# a training cutoff's candidates computed ahead (`LearnedRanker.training_candidates`), of these
# buyers, or None when they were not (the fit then proposes them itself)
CandidateSource = Callable[[dt.date, "npt.NDArray[np.int64]"], "pd.DataFrame | None"]


class LearnedRanker:
    """LambdaMART over the generators' union, trained on `cutoffs` earlier cutoffs (each
    with the purchases of the `window_days` after it as labels, and of the `long_window_days`
    after it as a second group where those end by the fit's day) and, when given, on what
    shoppers did with the lists they were shown (ml/feedback.py, position-debiased), serving
    from the generators fitted at `as_of`. It answers like a `Recommender` (`recommend`)."""

    name = "ranker"

    def __init__(
        self,
        catalogue: Catalogue,
        window_days: int,
        cutoffs: int = TRAINING_CUTOFFS,
        debias: bool = True,
        training_customers: int = TRAINING_CUSTOMERS,
        generator_customers: int = GENERATOR_CUSTOMERS,
        long_window_days: int = LONG_WINDOW_DAYS,
    ) -> None:
        for name, value in (
            ("training_customers", training_customers),
            ("generator_customers", generator_customers),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (0 = all), got {value}")
        self.catalogue = catalogue
        self.window_days = window_days
        self.long_window_days = long_window_days
        self.cutoffs = cutoffs
        self.training_customers = training_customers
        self.generator_customers = generator_customers
        self.debias = debias
        self.model = None
        self.rounds = 0  # the fitted forest's trees (`choose_rounds`)
        self.training: dict[str, float] = {}
        self._purchases: dict[dt.date, RankingData] = {}
        self._compiled: CompiledForest | None = None

    def __getstate__(self) -> dict:
        # stored models carry no training data and no machine code
        return {**self.__dict__, "_purchases": {}, "_compiled": None}

    def compiled(self) -> CompiledForest:
        """The fitted forest as machine code, compiled on first use (call it before scoring
        threads start)."""
        assert self.model is not None
        if getattr(self, "_compiled", None) is None:
            self._compiled = CompiledForest(self.model)
        return self._compiled

    def training_cutoffs(self, daily: pd.DataFrame, as_of: dt.date) -> list[dt.date]:
        """`training_cutoffs` before `as_of` of data starting on the first day of `daily`."""
        first = pd.to_datetime(daily["interaction_date"]).min().date()
        return training_cutoffs(first, as_of, self.window_days, self.cutoffs)

    def purchase_data(
        self,
        daily: pd.DataFrame,
        as_of: dt.date,
        statistics: StatisticsSource | None = None,
        candidates: CandidateSource | None = None,
    ) -> RankingData:
        """One group per customer and training cutoff before `as_of`: their candidates at
        the cutoff, labelled by what they bought in the window after it, and for the cutoffs
        whose `long_window_days` after them end by `as_of`, a second group labelled by those
        days (first, so the newest cutoff's groups stay last). Kept per `as_of` for the
        feedback evaluation, never stored; `statistics` gives the snapshots' customer
        statistics and `candidates` the cutoffs' candidates where they were computed ahead
        (`training_candidates`)."""
        if as_of in self._purchases:
            return self._purchases[as_of]
        parts: list[tuple[pd.DataFrame, npt.NDArray[np.int32], npt.NDArray[np.int64]]] = []
        long_parts: list[tuple[pd.DataFrame, npt.NDArray[np.int32], npt.NDArray[np.int64]]] = []
        recall = {}
        long = dt.timedelta(days=self.long_window_days)
        for cutoff in self.training_cutoffs(daily, as_of):
            truth = self._sample(labels(daily, cutoff, self.window_days), cutoff)
            buyers = np.sort(truth["customer_id"].unique())
            ahead = statistics(cutoff, buyers) if statistics else None
            proposed = candidates(cutoff, buyers) if candidates else None
            if proposed is None:
                snapshot, proposed = self._proposed(daily, cutoff, buyers, ahead)
            else:  # the snapshot's statistics of the buyers: their own rows are enough
                mine = None if ahead is not None else daily[daily["customer_id"].isin(buyers)]
                snapshot = Snapshot(daily, cutoff, self.catalogue, mine, statistics=ahead)
            frame = features(snapshot, proposed)  # sorted by customer (the union's order)
            pairs = frame[["customer_id", "product_id"]]  # merging the whole frame copies it
            customer = frame["customer_id"].to_numpy()
            matrix = feature_matrix(frame)
            del frame, proposed, snapshot
            label = _hits(pairs, truth)
            recall[f"candidate_recall@{cutoff}"] = float(label.sum() / max(len(truth), 1))
            parts.append(_groups(matrix, label, customer))
            if self.long_window_days > self.window_days and cutoff + long <= as_of:
                later = labels(daily, cutoff, self.long_window_days)
                long_parts.append(_groups(matrix, _hits(pairs, later), customer))
            del matrix
        if not parts or not any(len(m) for m, _, _ in parts):
            raise NotEnoughHistory(
                f"no training cutoff with history and purchases before {as_of}: "
                f"{self.window_days}-day windows need more days"
            )
        every = long_parts + parts
        rows = sum(len(m) for m, _, _ in every)
        data = RankingData(
            pd.concat([m for m, _, _ in every], ignore_index=True),
            np.concatenate([t for _, t, _ in every]),
            np.concatenate([g for _, _, g in every]),
            np.full(rows, NOT_SHOWN, dtype=np.int32),
            recall=recall,
            newest=len(parts[-1][2]),
            long_groups=sum(len(g) for _, _, g in long_parts),
        )
        self._purchases = {as_of: data}
        return data

    def training_buyers(self, daily: pd.DataFrame, cutoff: dt.date) -> npt.NDArray[np.int64]:
        """The customers a training cutoff learns from (sorted): at most `training_customers`
        of those who buy in the window after it."""
        truth = self._sample(labels(daily, cutoff, self.window_days), cutoff)
        return np.sort(truth["customer_id"].unique()).astype(np.int64)

    def training_candidates(
        self, daily: pd.DataFrame, cutoff: dt.date, statistics: StatisticsSource | None = None
    ) -> pd.DataFrame:
        """The candidates of a training cutoff's buyers (`training_buyers`): what `fit` learns
        from at that cutoff, computed ahead (the step gold.customer_product_candidates)
        and handed back through `fit(candidates=...)`."""
        buyers = self.training_buyers(daily, cutoff)
        ahead = statistics(cutoff, buyers) if statistics else None
        return self._proposed(daily, cutoff, buyers, ahead)[1]

    def _proposed(
        self,
        daily: pd.DataFrame,
        cutoff: dt.date,
        buyers: npt.NDArray[np.int64],
        statistics: pd.DataFrame | None,
    ) -> tuple[Snapshot, pd.DataFrame]:
        """A training cutoff's snapshot and its buyers' candidates, from generators fitted on
        the rows of the buyers and of a sample of the others (`_generator_rows`)."""
        histories = self._generator_rows(daily, buyers, cutoff)
        snapshot = Snapshot(daily, cutoff, self.catalogue, histories, statistics=statistics)
        return snapshot, Generators(histories, snapshot).propose(buyers)

    def _sample(self, truth: pd.DataFrame, cutoff: dt.date) -> pd.DataFrame:
        """The purchases of at most `training_customers` of the window's buyers, drawn with a
        seed of the cutoff (the same sample in every run)."""
        buyers = truth["customer_id"].unique()
        if not self.training_customers or len(buyers) <= self.training_customers:
            return truth
        rng = np.random.default_rng(day_number(cutoff))
        kept = rng.choice(buyers, self.training_customers, replace=False)
        return truth[truth["customer_id"].isin(kept)]

    def _generator_rows(
        self, daily: pd.DataFrame, customers: npt.NDArray[np.int64], cutoff: dt.date
    ) -> pd.DataFrame:
        """The daily rows a training cutoff's generators are fitted on: those of `customers`
        (whom they propose for) and of a sample of the others drawn with a seed of the cutoff,
        `generator_customers` in all (every row when there are no more customers than that).
        The others are drawn from those with a row up to the cutoff, so a cutoff's rows are
        the same whichever later day the fit is as of."""
        known = day_numbers(daily["interaction_date"]) <= day_number(cutoff)
        everyone = daily.loc[known, "customer_id"].unique()
        if not self.generator_customers or len(everyone) <= self.generator_customers:
            return daily
        others = np.setdiff1d(everyone, customers)
        extra = max(0, self.generator_customers - len(customers))
        drawn = np.random.default_rng(day_number(cutoff)).choice(others, extra, replace=False)
        return daily[daily["customer_id"].isin(np.concatenate([customers, drawn]))]

    def feedback_data(self, daily: pd.DataFrame, rows: pd.DataFrame) -> RankingData:
        """One group per answer shown (ml.feedback rows): the products on the page with the
        features known the day before it was shown (snapshots every `FEEDBACK_SNAPSHOT_DAYS`
        days: the features of an answer are at most that stale, never from after it)."""
        day = day_numbers(rows["shown_at"])
        start = day - day % FEEDBACK_SNAPSHOT_DAYS
        order = np.lexsort((rows["position"].to_numpy(), rows["request_id"].to_numpy(), start))
        rows, start = rows.iloc[order].reset_index(drop=True), start[order]
        frames = []
        for first in np.unique(start):
            part = rows[start == first]
            cutoff = dt.date(1970, 1, 1) + dt.timedelta(days=int(first) - 1)
            customers = part["customer_id"].unique()
            histories = self._generator_rows(daily, customers, cutoff)
            snapshot = Snapshot(daily, cutoff, self.catalogue, histories)
            proposed = Generators(histories, snapshot).propose(customers)
            shown = part[["customer_id", "product_id"]].merge(proposed, how="left")
            frames.append(feature_matrix(features(snapshot, shown)))
        _, sizes = np.unique(pd.factorize(rows["request_id"])[0], return_counts=True)
        return RankingData(
            pd.concat(frames, ignore_index=True),
            rows["label"].to_numpy(np.int32),
            sizes,
            rows["position"].to_numpy(np.int32),
            rows,
        )

    def fit(
        self,
        daily: pd.DataFrame,
        as_of: dt.date,
        feedback: pd.DataFrame | None = None,
        statistics: StatisticsSource | None = None,
        candidates: CandidateSource | None = None,
    ) -> LearnedRanker:
        """Learn from the cutoffs before `as_of` (and `feedback`), then serve from generators
        fitted on every row up to it; `statistics` gives the customer statistics
        (`snapshot_statistics`) of the training cutoffs where they were computed ahead; the
        other snapshots (the serving one, those of the answers' weeks) compute them from the
        rows; `candidates` gives the training cutoffs' candidates where they were proposed
        ahead."""
        clock = time.perf_counter()
        parts = [self.purchase_data(daily, as_of, statistics, candidates)]
        self.training.update(parts[0].recall, long_window_groups=float(parts[0].long_groups))
        if feedback is not None and len(feedback):
            parts.append(self.feedback_data(daily, feedback))
            self.training["feedback_answers"] = float(len(parts[-1].groups))
        forest = time.perf_counter()
        self.training["groups_s"] = forest - clock
        self._fit_forest(parts, self.debias and len(parts) > 1)
        self.training.update(
            rows=float(sum(len(p.label) for p in parts)), customers=float(len(parts[0].groups))
        )
        del parts  # the training rows are not needed to serve: let go before the serving round
        self.as_of = as_of
        serving = time.perf_counter()
        self.training["forest_s"] = serving - forest
        # every customer's statistics computed per scoring batch: memory stays bounded
        self.serving = Generators(daily, Snapshot(daily, as_of, self.catalogue))
        self.training["serving_s"] = time.perf_counter() - serving
        return self

    def reseeded(self, seed: int) -> LearnedRanker:
        """A copy whose forest is fitted again on the same purchase groups with LightGBM's
        samples seeded by `seed`, its trees chosen again: how far the seed alone moves a
        figure (bench/ranker_seeds.py). Only for a fit that learnt from purchases alone."""
        if self.model is None or "feedback_answers" in self.training:
            raise ValueError("reseeded needs a ranker fitted on purchase groups only")
        out = copy.copy(self)
        out.training = {**self.training, "seed": float(seed)}
        out._fit_forest([self._purchases[self.as_of]], False, seed)
        return out

    def _fit_forest(self, parts: list[RankingData], debias: bool, seed: int = 0) -> None:
        """The forest on `parts` with its number of trees chosen first (`choose_rounds`)."""
        clock = time.perf_counter()
        self.rounds, newest_ndcg = choose_rounds(parts, debias, seed)
        self.training["choose_rounds_s"] = time.perf_counter() - clock
        self.model = train(parts, debias, self.rounds, seed)
        self._compiled = None
        self.training["rounds"] = float(self.rounds)
        if newest_ndcg is not None:
            self.training["newest_cutoff_ndcg@10"] = newest_ndcg

    def importance(self) -> dict[str, float]:
        """Gain importance per feature, largest first."""
        assert self.model is not None
        booster = getattr(self.model, "booster_", self.model)  # older versions: LGBMRanker
        gains = booster.feature_importance("gain")
        return dict(sorted(zip(FEATURES, gains.tolist(), strict=True), key=lambda kv: -kv[1]))

    def recommend(
        self,
        customer_ids: npt.ArrayLike,
        k: int = 10,
        exclude_seen: bool = False,
        *,
        items: npt.ArrayLike | None = None,
        exclude: pd.DataFrame | None = None,
        batch: int = SCORING_BATCH,
        workers: int | None = None,
        compiled: bool | None = None,
    ) -> Recommendations:
        """Each customer's top k of the ranked candidates, with a `reason` per slot;
        `items` restricts the products, `exclude` drops (customer_id, product_id) pairs.
        (`exclude_seen` is accepted for the recommender interface; repeats are the ranker's
        call.) Customers are ranked `batch` at a time on `workers` threads (`threaded`), with
        the `compiled` forest (default: from `COMPILE_FROM_CUSTOMERS` customers on)."""
        if self.model is None:
            raise RuntimeError("LearnedRanker is not fitted")
        customers = np.asarray(customer_ids, dtype=np.int64).ravel()
        unique = np.unique(customers)
        batches = [unique[start : start + batch] for start in range(0, len(unique), batch)]
        if compiled is None:
            compiled = len(unique) >= COMPILE_FROM_CUSTOMERS
        predict = self.compiled().predict if compiled else self.model.predict

        def score(part: npt.NDArray[np.int64]) -> pd.DataFrame:
            ranked = self._ranked(part, k, items, exclude, predict)
            return ranked.assign(reason=reasons(ranked, self.serving))

        parts = threaded(score, batches, workers)
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        return _recommendations(customers, frame, k, "ranker_score", "reason")

    def _ranked(
        self,
        customers: npt.NDArray[np.int64],
        k: int,
        items: npt.ArrayLike | None,
        exclude: pd.DataFrame | None,
        predict: Callable[[pd.DataFrame], npt.NDArray[np.float64]],
    ) -> pd.DataFrame:
        """The top k candidates of each customer by the ranker's score, with a `slot`."""
        candidates = _allowed(self.serving.propose(customers), items, exclude)
        frame = features(self.serving.snapshot, candidates)
        score = predict(feature_matrix(frame)) if len(frame) else np.empty(0)
        score = cold_start_scores(frame, score)
        customer = frame["customer_id"].to_numpy(np.int64)
        order = np.lexsort((-score, customer))  # stable: candidate order among equal scores
        slot = place_in_run(customer[order])
        keep = order[slot < k]
        return frame.iloc[keep].assign(ranker_score=score[keep], slot=slot[slot < k])


def cold_start_scores(
    frame: pd.DataFrame, score: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """The forest's `score` of each candidate of `frame` (from `features`), but for customers
    with no row at all up to the cutoff (no tenure): minus the candidate's place in their
    cold-start list, what trends in their city (`trending_city`'s order), then the best
    sellers (`popular`'s), then the forest's order. The forest learnt from customers with a
    history; with none of theirs to go on it ranked these below the trending order on every
    window it was tried on (docs/ml_log.md, "Cold-start lists")."""
    rows = np.flatnonzero(np.isnan(frame["customer_tenure"].to_numpy(np.float64)))
    if not len(rows):
        return score

    def rank(generator: str) -> npt.NDArray[np.float64]:  # not proposed by it: last
        return np.nan_to_num(frame[f"{generator}_rank"].to_numpy(np.float64)[rows], nan=np.inf)

    customer = frame["customer_id"].to_numpy(np.int64)[rows]
    order = np.lexsort((-score[rows], rank("popular"), rank("trending_city"), customer))
    out = np.array(score, dtype=np.float64)
    out[rows[order]] = (-place_in_run(customer[order])).astype(np.float64)  # 0, -1, -2, …
    return out


def _allowed(
    frame: pd.DataFrame, items: npt.ArrayLike | None, exclude: pd.DataFrame | None
) -> pd.DataFrame:
    """Candidates among `items` (all when None) and not in the `exclude` pairs."""
    if items is not None:
        frame = frame[frame["product_id"].isin(np.asarray(items))]
    if exclude is not None and len(exclude):
        banned = exclude[["customer_id", "product_id"]].drop_duplicates().assign(_banned=True)
        drop = frame.merge(banned, how="left")["_banned"].notna().to_numpy()
        frame = frame[~drop]
    return frame


def _recommendations(
    customers: npt.NDArray[np.int64],
    ranked: pd.DataFrame,
    k: int,
    score: str,
    reason: str | None = None,
) -> Recommendations:
    """Recommendations of `customers` (repeats allowed) from rows (customer_id, product_id,
    slot, score[, reason]) with slots 0..k-1."""
    unique, inverse = np.unique(customers, return_inverse=True)
    ids = np.full((len(unique), k), -1, dtype=np.int64)
    scores = np.full((len(unique), k), np.nan)
    texts = np.full((len(unique), k), None, dtype=object)
    if len(ranked):
        rows = np.searchsorted(unique, ranked["customer_id"].to_numpy(np.int64))
        slots = ranked["slot"].to_numpy(np.int64)
        ids[rows, slots] = ranked["product_id"].to_numpy(np.int64)
        scores[rows, slots] = ranked[score].to_numpy(np.float64)
        if reason is not None:
            texts[rows, slots] = ranked[reason].to_numpy(object)
    return Recommendations(
        customers, ids[inverse], scores[inverse], texts[inverse] if reason else None
    )


def reasons(frame: pd.DataFrame, generators: Generators) -> list[str]:
    """The strongest signal of each row in words: the purchase cycle, the purchase, the
    browsing, else the generator that ranked it best."""
    cities = generators.snapshot.catalogue.city_of
    names = generators.snapshot.catalogue.names

    def column(name: str) -> npt.NDArray[np.float64]:
        return frame[name].to_numpy(np.float64)

    bought, interval = column("purchase_days"), column("own_interval")
    cycle = (bought >= 2) & ~np.isnan(interval)
    once = ~cycle & (bought >= 1)
    cart = ~cycle & ~once & (column("days_since_cart") < BROWSE_DAYS)  # False where NaN
    view = ~cycle & ~once & ~cart & (column("days_since_view") < BROWSE_DAYS)
    out = np.array(_best_generators(frame), dtype=object)
    since = column("days_since_purchase")
    out[cycle] = [
        f"bought every ~{i:.0f} days, last {d:.0f} days ago"
        for i, d in zip(interval[cycle], since[cycle], strict=True)
    ]
    for mask, what, day in (
        (once, "bought", "last_purchase"),
        (cart, "added to cart", "last_cart"),
        (view, "viewed", "last_view"),
    ):
        days = np.datetime_as_string(column(day)[mask].astype("datetime64[D]"))
        out[mask] = [f"{what} on {d}" for d in days]
    # "bought with X": the purchase behind the basket rule, named
    basket = np.flatnonzero(out == "bought_with")
    if len(basket) and "bought_with" in generators.models:
        model = generators.models["bought_with"]
        rows = frame.iloc[basket]
        behind = model.because(rows["customer_id"], rows["product_id"])  # type: ignore[attr-defined]
        out[basket] = [f"bought with {names.get(p, f'product {p}')}" for p in behind.tolist()]
    trending = np.flatnonzero(out == "trending_city")
    city = [cities.get(c) for c in frame["customer_id"].to_numpy()[trending].tolist()]
    out[trending] = [f"trending in {c}" if c else "trending" for c in city]
    favourite = np.flatnonzero(out == "category_favourites")
    category = frame["category"].to_numpy()[favourite].tolist()
    out[favourite] = [
        f"a best seller in {c if isinstance(c, str) else 'a category'}, which you often buy"
        for c in category
    ]
    return [_GENERATOR_REASONS.get(text, text) for text in out.tolist()]


def _best_generators(frame: pd.DataFrame) -> list[str]:
    """The generator (other than the history-based ones) that ranked each row best, the first
    in `GENERATORS` among equals; "recommended" where none did."""
    named = [g for g in GENERATORS if g not in HISTORY_GENERATORS]
    ranks = np.column_stack([frame[f"{g}_rank"].to_numpy(np.float64) for g in named])
    ranks = np.where(np.isnan(ranks), np.inf, ranks)
    best = np.asarray(named + ["recommended"], dtype=object)
    choice = np.where(np.isinf(ranks.min(axis=1)), len(named), ranks.argmin(axis=1))
    return best[choice].tolist()


_GENERATOR_REASONS: Mapping[str, str] = {
    "recommended": "recommended",
    "item_knn": "similar to what you bought or viewed",
    "user_knn": "customers with your tastes bought it",
    "als": "customers with your tastes bought it",
    "bought_with": "often bought with what you bought",
    "content": "like products you bought or viewed",
    "popular": f"popular in the last {POPULAR_DAYS} days",
    "ease": "often goes with what you bought or viewed",
}


class GeneratorModel:
    """One generator alone as a model: its own ranking of its candidates (for the evaluation
    table, next to the ranker that combines them)."""

    def __init__(self, generator: str, ranker: LearnedRanker) -> None:
        self.name = f"gen_{generator}"
        self.generator = generator
        self.ranker = ranker

    def recommend(
        self,
        customer_ids: npt.ArrayLike,
        k: int = 10,
        exclude_seen: bool = False,
        *,
        items: npt.ArrayLike | None = None,
        exclude: pd.DataFrame | None = None,
    ) -> Recommendations:
        customers = np.asarray(customer_ids, dtype=np.int64).ravel()
        rank = f"{self.generator}_rank"
        frame = self.ranker.serving.propose(customers)
        frame = _allowed(frame[frame[rank].notna()], items, exclude)
        frame = frame.sort_values(["customer_id", rank], kind="stable")
        frame = frame.assign(slot=frame.groupby("customer_id").cumcount())
        return _recommendations(customers, frame[frame["slot"] < k], k, f"{self.generator}_score")
