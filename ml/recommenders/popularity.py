"""Popularity baselines and trending: the bar every model must clear, and the cold-start answer.

- `Popularity`: the most-interacted products overall. Every metric is reported next to it.
- `GroupPopularity`: the same within a customer group (city, area, segment), shrunk towards the
  global ranking so small groups are not ruled by a handful of customers. It can score customers
  it never saw in training as long as their group is known: that is the cold-start rule for new
  customers.
- `Trending`: what is gaining attention now: recent interactions with exponential time decay,
  multiplied up by velocity (recent window vs the window before) and an optional seasonal boost;
  globally or per group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from ml.interactions import Interactions
from ml.recommenders.base import Ids, Masks, Recommender, top_k

# product ids, as-of time -> a multiplier per product (1 = no boost); e.g. a calendar of
# seasonal categories (school supplies in August, cricket gear before the season).
SeasonalBoost = Callable[[npt.NDArray[np.int64], np.datetime64], npt.NDArray[np.float64]]


class GroupCodes:
    """Customer id -> a code into `names` (the sorted group names), -1 when unknown. Built once
    per model: finding the group names of a million customers again for every batch cost
    0.7 s per 2,000 customers scored."""

    def __init__(self, groups: Mapping[int, str] | pd.Series) -> None:
        series = groups if isinstance(groups, pd.Series) else pd.Series(dict(groups), dtype=object)
        series = series.dropna()
        self.names = np.array(sorted(series.unique().tolist()), dtype=object)
        codes = pd.Categorical(series, categories=self.names).codes.astype(np.int64)
        self._codes = pd.Series(codes, index=series.index)

    def __call__(self, customer_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return self._codes.reindex(customer_ids, fill_value=-1).to_numpy(np.int64)


class Popularity(Recommender):
    """Global popularity: distinct customers per product (`by="users"`) or summed weight."""

    name = "popularity"

    def __init__(self, by: Literal["users", "weight"] = "users") -> None:
        super().__init__()
        self.by = by
        self.item_scores: npt.NDArray[np.float64] = np.empty(0)

    def _fit(self, interactions: Interactions) -> None:
        if self.by == "users":
            self.item_scores = interactions.item_user_counts().astype(np.float64)
        else:
            self.item_scores = np.asarray(interactions.matrix.sum(axis=0), dtype=np.float64).ravel()

    def _score(self, rows: Ids, customer_ids: Ids) -> np.ndarray:
        return np.broadcast_to(self.item_scores, (len(rows), len(self.item_scores))).copy()


class GroupPopularity(Recommender):
    """Popularity within the customer's group, shrunk towards the global ranking.

    score(g, i) = (customers of g who took i + m · global share of i) / (customers of g + m),
    with m = `prior_strength`: a group of 3 customers mostly follows the global list, a group of
    3,000 its own. Customers without a known group get the global share.
    """

    name = "group_popularity"

    def __init__(self, groups: Mapping[int, str] | pd.Series, prior_strength: float = 10.0) -> None:
        super().__init__()
        self.groups = groups
        self.prior_strength = prior_strength
        self.group_names: npt.NDArray[np.object_] = np.empty(0, dtype=object)
        self.group_scores: np.ndarray = np.empty((0, 0))
        self.global_share: npt.NDArray[np.float64] = np.empty(0)

    def _fit(self, interactions: Interactions) -> None:
        n_users, n_items = interactions.shape
        self.group_names = self._group_codes.names
        codes = self._group_codes(interactions.user_ids)
        binary = interactions.matrix.astype(bool).astype(np.float32)
        self.global_share = interactions.item_user_counts() / max(n_users, 1)
        known = codes >= 0
        indicator = sp.csr_matrix(
            (np.ones(known.sum(), dtype=np.float32), (codes[known], np.flatnonzero(known))),
            shape=(len(self.group_names), n_users),
        )
        counts = np.asarray((indicator @ binary).todense(), dtype=np.float64)
        sizes = np.bincount(codes[known], minlength=len(self.group_names)).astype(np.float64)
        m = self.prior_strength
        self.group_scores = (counts + m * self.global_share) / (sizes[:, None] + m)

    @cached_property
    def _group_codes(self) -> GroupCodes:
        return GroupCodes(self.groups)

    def _score(self, rows: Ids, customer_ids: Ids) -> np.ndarray:
        codes = self._group_codes(customer_ids)
        table = np.vstack([self.group_scores, self.global_share[None, :]])
        return table[codes].copy()  # -1 picks the global row


class Trending(Recommender):
    """Products gaining attention now, globally or per group (city/area/segment).

    For each product, over the interactions up to `as_of` (default: the newest one):
      decayed  = Σ weight · 2^(−age / half_life_days) over the last `window_days`
      velocity = (recent − previous) / (recent + previous + 1), where recent/previous are the
                 summed weights of the last window and the window before it (in [−1, 1))
      score    = decayed / max(decayed) · (1 + velocity_weight · velocity) · boost
    so a product needs recent activity to trend at all, and rising products beat steady ones.
    `seasonal_boost` (optional) returns a multiplier per product. With `groups`, each group gets
    its own scores plus `global_weight` × the global ones (a quiet group still sees what trends
    nationally); customers without a group get the global scores. Needs interaction times
    (`Interactions.from_arrays(..., at=...)`).
    """

    name = "trending"

    def __init__(
        self,
        window_days: float = 7.0,
        half_life_days: float = 3.0,
        velocity_weight: float = 0.5,
        as_of: np.datetime64 | str | None = None,
        seasonal_boost: SeasonalBoost | None = None,
        groups: Mapping[int, str] | pd.Series | None = None,
        global_weight: float = 0.2,
    ) -> None:
        super().__init__()
        self.window_days = window_days
        self.half_life_days = half_life_days
        self.velocity_weight = velocity_weight
        self.as_of = None if as_of is None else np.datetime64(as_of, "s")
        self.seasonal_boost = seasonal_boost
        self.groups = groups
        self.global_weight = global_weight
        self.group_names: npt.NDArray[np.object_] = np.empty(0, dtype=object)
        self.components: dict[str, np.ndarray] = {}
        self.group_components: dict[str, np.ndarray] = {}
        self.item_scores: npt.NDArray[np.float64] = np.empty(0)
        self.group_scores: np.ndarray = np.empty((0, 0))
        self.fitted_as_of: np.datetime64 | None = None

    def _fit(self, interactions: Interactions) -> None:
        self._group_lists: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if interactions.event_at is None or interactions.event_item is None:
            raise ValueError("Trending needs interaction times: build Interactions with at=...")
        at = interactions.event_at
        as_of = self.as_of if self.as_of is not None else at.max()
        self.fitted_as_of = as_of
        age = (as_of - at).astype("timedelta64[s]").astype(np.float64) / 86_400.0
        # only the last two windows count: the other events (most of a long history) are
        # dropped before the per-event arrays are built, so memory follows the windows
        inside = np.flatnonzero((age >= 0) & (age < 2 * self.window_days))
        age = age[inside]
        weight = np.asarray(interactions.event_weight, dtype=np.float64)[inside]
        item = interactions.event_item[inside].astype(np.int64)
        n_items = interactions.shape[1]
        boost = (
            np.ones(n_items)
            if self.seasonal_boost is None
            else np.asarray(self.seasonal_boost(interactions.item_ids, as_of), dtype=np.float64)
        )
        bucket = np.zeros(len(item), dtype=np.int64)
        n_buckets = 1
        if self.groups is not None and interactions.event_user is not None:
            self.group_names = self._group_codes.names
            codes = self._group_codes(interactions.user_ids)
            bucket = codes[interactions.event_user[inside]] + 1  # 0 = no group; 1.. = groups
            n_buckets = len(self.group_names) + 1
        per_bucket = self._components(age, weight, item, bucket, n_buckets, n_items, boost)
        global_parts = self._components(age, weight, item, np.zeros_like(item), 1, n_items, boost)
        self.components = {name: part[0] for name, part in global_parts.items()}
        self.group_components = {name: part[1:] for name, part in per_bucket.items()}
        self.item_scores = self.components["score"]
        self.group_scores = per_bucket["score"][1:] + self.global_weight * self.item_scores

    def _components(
        self,
        age: np.ndarray,
        weight: np.ndarray,
        item: np.ndarray,
        bucket: np.ndarray,
        n_buckets: int,
        n_items: int,
        boost: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """decayed, recent, previous, velocity, score per (bucket, item)."""
        w, h = self.window_days, self.half_life_days
        recent_mask = (age >= 0) & (age < w)
        previous_mask = (age >= w) & (age < 2 * w)
        key = bucket * n_items + item
        size = n_buckets * n_items

        def total(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
            # float even when nothing falls in the window (bincount of nothing is int64)
            counts = np.bincount(key[mask], values[mask], minlength=size).astype(np.float64)
            return counts.reshape(n_buckets, n_items)

        decayed = total(recent_mask, weight * np.exp2(-age / h))
        recent = total(recent_mask, weight)
        previous = total(previous_mask, weight)
        velocity = (recent - previous) / (recent + previous + 1.0)
        peak = decayed.max(axis=1, keepdims=True)
        norm = np.divide(decayed, peak, out=np.zeros_like(decayed), where=peak > 0)
        score = norm * (1.0 + self.velocity_weight * velocity) * boost
        return {
            "decayed": decayed,
            "recent": recent,
            "previous": previous,
            "velocity": velocity,
            "boost": np.broadcast_to(boost, decayed.shape),
            "score": score,
        }

    def _score(self, rows: Ids, customer_ids: Ids) -> np.ndarray:
        return self._table()[self._codes_of(customer_ids)]

    def _top_of_batch(
        self, rows: Ids, customers: Ids, k: int, masks: Masks
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        if masks.seen is not None or masks.excluded is not None:  # lists of their own
            return super()._top_of_batch(rows, customers, k, masks)
        # every customer of a group gets the group's list: one top k per group, kept for the
        # next batches when no product is banned
        codes = self._codes_of(customers)
        lists = self.__dict__.setdefault("_group_lists", {})
        if masks.banned is not None or k not in lists:
            table = self._table().copy()
            masks.apply(table, np.full(len(table), -1))
            cols, vals = top_k(table, k, self._tie_order)
            ids = np.where(cols >= 0, self.item_ids[np.maximum(cols, 0)], -1)
            if masks.banned is not None:
                return ids[codes], vals[codes]
            lists[k] = ids, vals
        ids, vals = lists[k]
        return ids[codes], vals[codes]

    @cached_property
    def _group_codes(self) -> GroupCodes:
        assert self.groups is not None
        return GroupCodes(self.groups)

    def _codes_of(self, customer_ids: Ids) -> npt.NDArray[np.int64]:
        """Each customer's row in `_table()`: their group's, else the last (national) one."""
        if self.groups is None or len(self.group_names) == 0:
            return np.zeros(len(customer_ids), dtype=np.int64)
        return self._group_codes(customer_ids)

    def _table(self) -> np.ndarray:
        """The (groups + 1) × items score table, whose last row is the national score."""
        if self.groups is None or len(self.group_names) == 0:
            return self.item_scores[None, :]
        return np.vstack([self.group_scores, self.item_scores[None, :]])

    def table(self, top_n: int | None = None) -> pd.DataFrame:
        """The global trending table (gold.trending_products): one row per product with its
        components, best first; `top_n` keeps the head."""
        frame = pd.DataFrame({"product_id": self.item_ids, **self.components})
        frame = frame.sort_values(["score", "decayed"], ascending=False, kind="stable")
        frame.insert(0, "rank", np.arange(1, len(frame) + 1))
        frame["as_of"] = pd.Timestamp(self.fitted_as_of)
        return (frame if top_n is None else frame.head(top_n)).reset_index(drop=True)

    def group_table(self, top_n: int | None = None) -> pd.DataFrame:
        """Per-group trending (gold.trending_products by city/area): group, rank, product_id,
        the group's own components and `score` (group score + global_weight × global score)."""
        if len(self.group_names) == 0:
            return pd.DataFrame(columns=["group", "rank", "product_id", "score"])
        n_groups, n_items = self.group_scores.shape
        frame = pd.DataFrame(
            {
                "group": np.repeat(self.group_names, n_items),
                "product_id": np.tile(self.item_ids, n_groups),
                **{f"group_{k}": v.ravel() for k, v in self.group_components.items()},
                "score": self.group_scores.ravel(),
            }
        ).drop(columns="group_score")
        frame = frame.sort_values(
            ["group", "score", "group_decayed"], ascending=[True, False, False], kind="stable"
        )
        frame.insert(1, "rank", frame.groupby("group").cumcount() + 1)
        if top_n is not None:
            frame = frame[frame["rank"] <= top_n]
        frame["as_of"] = pd.Timestamp(self.fitted_as_of)
        return frame.reset_index(drop=True)
