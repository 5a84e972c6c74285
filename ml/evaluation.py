"""Honest offline evaluation of recommenders: a time-based split and ranking metrics at k.

Why time-based: a random split lets a model learn from the future it is asked to predict
(tomorrow's purchases of a trending product leak into its popularity). Training on everything
before a cutoff T and testing on the window after T is how the model is used in production.

Conventions (binary relevance; `recs` best first, only the first k count; `rel` = the customer's
held-out products):
  precision@k = hits / k
  recall@k    = hits / |rel|
  NDCG@k      = Σ_hits 1/log2(rank+1) / Σ_{r=1..min(|rel|,k)} 1/log2(r+1)
  AP@k        = Σ_hits precision@rank / min(|rel|, k)         (MAP@k = mean over customers)
  hit rate    = share of customers with at least one hit
  coverage    = distinct recommended products / catalogue size
  novelty     = mean over recommended items of −log2 p(i), p(i) = share of training customers
                who interacted with i (at least one customer is assumed, so unseen items are
                finite and maximally novel)
Customers with held-out items but no recommendations count as zeros: a model that cannot answer
is not let off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from ml.interactions import Interactions

Frame = pd.DataFrame | Mapping[str, np.ndarray]


def time_split(
    data: Frame,
    cutoff: str | np.datetime64 | pd.Timestamp,
    test_days: float | None = None,
    at_column: str = "at",
) -> tuple[Frame, Frame]:
    """(train, test): train = rows with `at` < cutoff, test = cutoff ≤ `at` < cutoff + test_days
    (all later rows when test_days is None). Works on a DataFrame or a dict of equal-length
    arrays (customer_id, product_id, at, weight, ...) and returns the same kind."""
    at = np.asarray(data[at_column]).astype("datetime64[ns]")
    t = np.datetime64(pd.Timestamp(cutoff).to_datetime64(), "ns")
    train = at < t
    test = at >= t
    if test_days is not None:
        test &= at < t + np.timedelta64(int(round(test_days * 86_400)), "s")
    if isinstance(data, pd.DataFrame):
        return data[train].reset_index(drop=True), data[test].reset_index(drop=True)
    return (
        {k: np.asarray(v)[train] for k, v in data.items()},
        {k: np.asarray(v)[test] for k, v in data.items()},
    )


def relevant_items(
    customer_ids: npt.ArrayLike,
    product_ids: npt.ArrayLike,
    train: Interactions | None = None,
    exclude_seen: bool = True,
) -> dict[int, npt.NDArray[np.int64]]:
    """customer -> distinct products in the test window. With `exclude_seen` (the default, as
    recommenders exclude seen items by default) products the customer had in training are not
    relevant, since no model is allowed to recommend them; customers left with nothing drop."""
    frame = pd.DataFrame(
        {
            "customer_id": np.asarray(customer_ids, dtype=np.int64),
            "product_id": np.asarray(product_ids, dtype=np.int64),
        }
    ).drop_duplicates()
    if exclude_seen and train is not None and len(frame):
        rows = train.user_rows(frame["customer_id"].to_numpy())
        cols = train.item_cols(frame["product_id"].to_numpy())
        known = (rows >= 0) & (cols >= 0)
        seen = np.zeros(len(frame), dtype=bool)
        if known.any():
            seen[known] = np.asarray(train.matrix[rows[known], cols[known]]).ravel() != 0
        frame = frame[~seen]
    return {
        int(c): np.sort(g.to_numpy())
        for c, g in frame.groupby("customer_id", sort=True)["product_id"]
    }


def _hits(recs: Iterable[int], rel: Iterable[int], k: int) -> npt.NDArray[np.bool_]:
    top = np.asarray(list(recs), dtype=np.int64)[:k]
    return np.isin(top, np.asarray(list(rel), dtype=np.int64))


def precision_at_k(recs: Iterable[int], rel: Iterable[int], k: int) -> float:
    return float(_hits(recs, rel, k).sum()) / k


def recall_at_k(recs: Iterable[int], rel: Iterable[int], k: int) -> float:
    n_rel = len(set(rel))
    return float(_hits(recs, rel, k).sum()) / n_rel if n_rel else 0.0


def ndcg_at_k(recs: Iterable[int], rel: Iterable[int], k: int) -> float:
    hits = _hits(recs, rel, k)
    n_rel = min(len(set(rel)), k)
    if n_rel == 0:
        return 0.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    return float((hits * discounts[: len(hits)]).sum() / discounts[:n_rel].sum())


def average_precision_at_k(recs: Iterable[int], rel: Iterable[int], k: int) -> float:
    hits = _hits(recs, rel, k)
    n_rel = min(len(set(rel)), k)
    if n_rel == 0 or not hits.any():
        return 0.0
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / n_rel)


def catalogue_coverage(
    recommendations: Mapping[int, Iterable[int]], catalogue_size: int, k: int
) -> float:
    """Share of the catalogue that appears in at least one top-k list."""
    items = {int(i) for recs in recommendations.values() for i in list(recs)[:k]}
    return len(items) / catalogue_size if catalogue_size else 0.0


def novelty(
    recommendations: Mapping[int, Iterable[int]],
    item_user_counts: Mapping[int, int] | pd.Series,
    n_users: int,
    k: int,
) -> float:
    """Mean self-information −log2 p(i) of the recommended items (higher = less obvious)."""
    counts = pd.Series(item_user_counts, dtype=np.float64)
    items = np.asarray([int(i) for recs in recommendations.values() for i in list(recs)[:k]])
    if len(items) == 0 or n_users <= 0:
        return 0.0
    c = counts.reindex(items).fillna(0.0).clip(lower=1.0).to_numpy()
    return float(np.mean(-np.log2(c / n_users)))


def evaluate_recommendations(
    recommendations: Mapping[int, Iterable[int]],
    relevant: Mapping[int, Iterable[int]],
    k: int,
    catalogue_size: int,
    item_user_counts: Mapping[int, int] | pd.Series,
    n_users: int,
) -> dict[str, float | int]:
    """All metrics of top-k lists against held-out items, over the customers in `relevant`."""
    users = list(relevant)
    per_user = np.array(
        [
            (
                precision_at_k(recommendations.get(u, []), relevant[u], k),
                recall_at_k(recommendations.get(u, []), relevant[u], k),
                ndcg_at_k(recommendations.get(u, []), relevant[u], k),
                average_precision_at_k(recommendations.get(u, []), relevant[u], k),
                float(_hits(recommendations.get(u, []), relevant[u], k).any()),
            )
            for u in users
        ]
    ).reshape(-1, 5)
    means = per_user.mean(axis=0) if users else np.zeros(5)
    evaluated = {u: recommendations.get(u, []) for u in users}
    return {
        "k": k,
        "users_evaluated": len(users),
        f"precision@{k}": float(means[0]),
        f"recall@{k}": float(means[1]),
        f"ndcg@{k}": float(means[2]),
        f"map@{k}": float(means[3]),
        f"hit_rate@{k}": float(means[4]),
        f"coverage@{k}": catalogue_coverage(evaluated, catalogue_size, k),
        f"novelty@{k}": novelty(evaluated, item_user_counts, n_users, k),
    }


class _Recommends(Protocol):
    name: str

    def recommend(self, customer_ids: npt.ArrayLike, k: int = 10, exclude_seen: bool = True): ...


def evaluate(
    recommender: _Recommends,
    train: Interactions,
    test_customer_ids: npt.ArrayLike,
    test_product_ids: npt.ArrayLike,
    k: int = 10,
    exclude_seen: bool = True,
    include_cold: bool = False,
    more_metrics: Callable[[dict[int, npt.NDArray[np.int64]]], Mapping[str, float]] | None = None,
) -> dict[str, float | int | str]:
    """Fit-free evaluation of a fitted recommender on the test window: a flat metrics dict
    (model, k, users_evaluated, precision@k, ..., novelty@k), ready for gold.model_evaluations.

    Customers are those with held-out items; cold ones (not in training) only when
    `include_cold`, since most models cannot answer them and the hybrid's cold rule should be
    measured on its own. `more_metrics` gets the same recommendations (customer id -> product
    ids) and adds its figures, e.g. agreement with a ground truth.
    """
    relevant = relevant_items(test_customer_ids, test_product_ids, train, exclude_seen)
    if not include_cold:
        ids = np.fromiter(relevant, dtype=np.int64, count=len(relevant))
        warm = set(ids[train.user_rows(ids) >= 0].tolist())
        relevant = {u: r for u, r in relevant.items() if u in warm}
    users = np.fromiter(relevant, dtype=np.int64, count=len(relevant))
    recs = recommender.recommend(users, k, exclude_seen).as_dict() if len(users) else {}
    counts = pd.Series(train.item_user_counts(), index=train.item_ids)
    # the catalogue a model can recommend from: the content model's reaches past the matrix
    catalogue = np.union1d(train.item_ids, getattr(recommender, "item_ids", train.item_ids))
    metrics = evaluate_recommendations(recs, relevant, k, len(catalogue), counts, train.shape[0])
    return {"model": recommender.name, **metrics, **(more_metrics(recs) if more_metrics else {})}


def category_slug(name: str) -> str:
    """The generator's column slug of a category (`Home & Kitchen` -> `home_kitchen`), as in
    generator/generate.py write_ground_truth."""
    return name.lower().replace(" & ", "_").replace(" ", "_")


def top_category_agreement(
    recommendations: Mapping[int, Iterable[int]],
    product_category: Mapping[int, str] | pd.Series,
    customer_tastes: pd.DataFrame,
    k: int | None = None,
) -> dict[str, float | int]:
    """Agreement with the generator's ground truth: the share of recommended products whose
    category is the customer's true top category (argmax of the `pref_<category slug>` columns
    of customer_tastes.parquet).

    Chosen over a rank correlation because it reads directly ("62 % of what we show is in the
    customer's favourite category") and works with k = 10 items, where a correlation over 8
    categories would rest on ties. `chance_share` is what recommending uniformly from the
    catalogue would score (the mean catalogue share of the customers' top categories), so the
    figure can be judged on its own.
    """
    pref_cols = [c for c in customer_tastes.columns if c.startswith("pref_")]
    slugs = np.array([c.removeprefix("pref_") for c in pref_cols], dtype=object)
    tastes = customer_tastes.set_index("customer_id")
    top = pd.Series(slugs[tastes[pref_cols].to_numpy().argmax(axis=1)], index=tastes.index)
    cats = pd.Series(product_category).map(lambda c: category_slug(str(c)))
    shares = cats.value_counts(normalize=True)
    hits = total = 0
    chance = []
    customers = 0
    for customer, recs in recommendations.items():
        if customer not in top.index:
            continue
        items = list(recs)[: k or None]
        if not items:
            continue
        want = top[customer]
        rec_cats = cats.reindex(items).to_numpy()
        hits += int((rec_cats == want).sum())
        total += len(items)
        chance.append(float(shares.get(want, 0.0)))
        customers += 1
    return {
        "top_category_share": hits / total if total else 0.0,
        "chance_share": float(np.mean(chance)) if chance else 0.0,
        "customers": customers,
    }
