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

The business tasks (`Window`): every customer who bought in the window is scored, on
- `all`: every product they bought in the window, repeat purchases included;
- `new`: the products they had not bought before the window (products only viewed count as new).
Every model's list is filled up to k with the most popular products of the weeks before the
window (what the platform shows when a model has nothing more to say), so models are compared
on what they add; for `new`, what the customer bought before is excluded from lists and fill.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

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


def _per_user_metrics(
    recommendations: Mapping[int, Iterable[int]],
    relevant: Mapping[int, Iterable[int]],
    users: list[int],
    k: int,
) -> npt.NDArray[np.float64]:
    """(precision, recall, NDCG, AP, hit) at k of each user, as the functions above compute
    them one user at a time, for every user at once (one membership test, not one per user)."""
    top = np.full((len(users), k), -1, dtype=np.int64)
    shown = np.zeros((len(users), k), dtype=bool)
    rel_rows, rel_items = [], []
    for row, user in enumerate(users):
        recs = np.asarray(list(recommendations.get(user, [])), dtype=np.int64)[:k]
        top[row, : len(recs)] = recs
        shown[row, : len(recs)] = True
        items = np.unique(np.asarray(list(relevant[user]), dtype=np.int64))
        rel_rows.append(np.full(len(items), row, dtype=np.int64))
        rel_items.append(items)
    rel_row = np.concatenate(rel_rows) if rel_rows else np.empty(0, dtype=np.int64)
    rel_item = np.concatenate(rel_items) if rel_items else np.empty(0, dtype=np.int64)
    n_rel = np.bincount(rel_row, minlength=len(users))
    # one integer per (user, item): ids shifted past the padding's -1
    span = int(max(top.max(initial=0), rel_item.max(initial=0))) + 2
    rows = np.arange(len(users))[:, None]
    hits = np.isin(rows * span + top + 1, rel_row * span + rel_item + 1) & shown
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(n_rel, k)]
    found = hits.sum(axis=1)
    precision = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(n_rel > 0, found / n_rel, 0.0)
        ndcg = np.where(n_rel > 0, (hits * discounts).sum(axis=1) / ideal, 0.0)
        ap = np.where(n_rel > 0, (precision * hits).sum(axis=1) / np.minimum(n_rel, k), 0.0)
    return np.column_stack([found / k, recall, ndcg, ap, (found > 0).astype(float)])


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
    per_user = _per_user_metrics(recommendations, relevant, users, k)
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


TASKS = ("all", "new")


class _Recommends(Protocol):
    name: str

    def recommend(
        self,
        customer_ids: npt.ArrayLike,
        k: int = 10,
        exclude_seen: bool = True,
        *,
        items: npt.ArrayLike | None = None,
        exclude: pd.DataFrame | None = None,
    ): ...


@dataclass(frozen=True)
class Window:
    """What models are scored on: the purchases of a window and what was known before it.

    purchases: (customer_id, product_id) bought in the window (the truth);
    bought_before: (customer_id, product_id) bought before the window (`new` excludes them);
    fallback: product ids best first, the fill of every list (popularity of recent weeks);
    item_user_counts: product id -> customers before the window (for novelty), n_users of them;
    catalogue_size: products a model could recommend (for coverage);
    known_customers: customers with any interaction before the window (the others are the
    `cold_start` population of `score_by_population`; None: not split)."""

    purchases: pd.DataFrame
    bought_before: pd.DataFrame
    fallback: npt.NDArray[np.int64]
    item_user_counts: pd.Series
    n_users: int
    catalogue_size: int
    known_customers: npt.NDArray[np.int64] | None = None
    # every model is scored on the same window: its truth is computed once per task
    _relevant: dict[str, dict[int, npt.NDArray[np.int64]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def relevant(self, task: str) -> dict[int, npt.NDArray[np.int64]]:
        """customer -> distinct products that count as hits for `task`; customers with none
        are not scored."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
        if task not in self._relevant:
            self._relevant[task] = self._compute_relevant(task)
        return self._relevant[task]

    def _compute_relevant(self, task: str) -> dict[int, npt.NDArray[np.int64]]:
        frame = self.purchases[["customer_id", "product_id"]].drop_duplicates()
        if task == "new" and len(frame):
            before = self.bought_before[["customer_id", "product_id"]].drop_duplicates()
            known = frame.merge(before.assign(_known=True), how="left")["_known"].notna()
            frame = frame[~known.to_numpy()]
        return {
            int(c): np.sort(g.to_numpy(np.int64))
            for c, g in frame.groupby("customer_id", sort=True)["product_id"]
        }

    def lists(
        self,
        model: _Recommends,
        customers: npt.ArrayLike,
        task: str,
        k: int,
        items: npt.ArrayLike | None = None,
    ) -> dict[int, npt.NDArray[np.int64]]:
        """Each customer's top k of `model` for `task`, filled from `fallback`."""
        customers = np.asarray(customers, dtype=np.int64)
        exclude = None
        if task == "new":
            exclude = self.bought_before[self.bought_before["customer_id"].isin(customers)]
        recs = model.recommend(customers, k, False, items=items, exclude=exclude).as_dict()
        return fill_lists(recs, customers, self.fallback, k, exclude)

    def score(
        self, model: _Recommends, task: str, k: int = 10, items: npt.ArrayLike | None = None
    ) -> dict[str, float | int | str]:
        """The metrics of `model` on `task` over the window's buyers (flat, for
        gold.model_evaluations)."""
        return {"model": model.name, **self.score_by_population(model, task, k, items)["buyers"]}

    def score_by_population(
        self, model: _Recommends, task: str, k: int = 10, items: npt.ArrayLike | None = None
    ) -> dict[str, dict[str, float | int]]:
        """The metrics of `model` on `task` over every buyer of the window (`buyers`) and, when
        `known_customers` is set, over those with no history before it (`cold_start`) and the
        others (`returning`); a population without a buyer is left out."""
        relevant = self.relevant(task)
        users = np.fromiter(relevant, dtype=np.int64, count=len(relevant))
        recs = self.lists(model, users, task, k, items) if len(users) else {}
        populations = {"buyers": relevant}
        if self.known_customers is not None:
            known = np.isin(users, self.known_customers)
            populations["cold_start"] = {int(u): relevant[int(u)] for u in users[~known]}
            populations["returning"] = {int(u): relevant[int(u)] for u in users[known]}
        return {
            name: evaluate_recommendations(
                recs, truth, k, self.catalogue_size, self.item_user_counts, self.n_users
            )
            for name, truth in populations.items()
            if truth or name == "buyers"
        }


def fill_lists(
    recs: Mapping[int, npt.NDArray[np.int64]],
    customers: npt.NDArray[np.int64],
    fallback: npt.NDArray[np.int64],
    k: int,
    exclude: pd.DataFrame | None = None,
) -> dict[int, npt.NDArray[np.int64]]:
    """Every customer's list padded to k from `fallback` (in its order), skipping what the list
    holds and the customer's `exclude` products."""
    banned: dict[int, set[int]] = {}
    if exclude is not None and len(exclude):
        for c, g in exclude.groupby("customer_id")["product_id"]:
            banned[int(c)] = set(g.tolist())
    pool = [int(p) for p in fallback]
    out = {}
    for c in customers.tolist():
        mine = [int(p) for p in recs.get(c, [])][:k]
        if len(mine) < k:
            skip = set(mine) | banned.get(c, set())
            for p in pool:
                if p not in skip:
                    mine.append(p)
                    if len(mine) == k:
                        break
        out[c] = np.asarray(mine, dtype=np.int64)
    return out


def by_model(evaluations: Iterable[Mapping], metric: str) -> list[dict[str, object]]:
    """One row per model with `metric` per split and task (`test all`, `validation new`, ...),
    from long evaluation rows (model, split, target, metrics), models in their first order."""
    rows: dict[str, dict[str, object]] = {}
    for e in evaluations:
        row = rows.setdefault(str(e["model"]), {"model": e["model"]})
        row[f"{e['split']} {e['target']}"] = e[metric]
    return list(rows.values())
