"""The interface every recommender shares, and the top-k machinery they all reuse.

A recommender is fitted on an `Interactions` matrix and then asked for the top k products of a
batch of customers. Subclasses only say how to score a batch of customers against their item
universe (a dense batch × items array); the base class does the rest the same way for all:
batching (so memory stays bounded whatever the number of customers), excluding what a customer
has already seen, exact top-k with ties broken by popularity (so a customer with little signal
still gets the best-known items rather than arbitrary ones), and padding when fewer than k
candidates exist.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from ml.interactions import Interactions

Ids = npt.NDArray[np.int64]

# Upper bound on the cells of one dense score batch (batch users × items): 2^23 float64 = 64 MiB.
SCORE_BATCH_CELLS = 1 << 23


@dataclass(frozen=True)
class Recommendations:
    """Top-k lists of a batch of customers.

    `product_ids[i]` are the products for `customer_ids[i]`, best first; rows with fewer than k
    candidates are padded with -1 (and NaN scores). `reasons`, when set, says per slot which
    model or rule put the product there (the hybrid fills it).
    """

    customer_ids: npt.NDArray[np.int64]
    product_ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    reasons: npt.NDArray[np.object_] | None = None

    @property
    def k(self) -> int:
        return int(self.product_ids.shape[1])

    def as_dict(self) -> dict[int, npt.NDArray[np.int64]]:
        """customer id -> recommended product ids (padding removed), as the metrics expect."""
        return {
            int(c): row[row >= 0]
            for c, row in zip(self.customer_ids.tolist(), self.product_ids, strict=True)
        }

    def to_frame(self) -> pd.DataFrame:
        """Long format, one row per (customer, rank): the shape of gold.customer_recommendations."""
        n, k = self.product_ids.shape
        frame = pd.DataFrame(
            {
                "customer_id": np.repeat(self.customer_ids, k),
                "rank": np.tile(np.arange(1, k + 1), n),
                "product_id": self.product_ids.ravel(),
                "score": self.scores.ravel(),
            }
        )
        if self.reasons is not None:
            frame["reason"] = self.reasons.ravel()
        return frame[frame["product_id"] >= 0].reset_index(drop=True)


class Recommender(ABC):
    """fit(interactions) once, then recommend(customer_ids, k) as often as needed.

    Subclasses set `name` and implement `_fit` and `_score`. After `fit`, `item_ids` is the
    model's item universe (usually the matrix's columns; the content model uses the catalogue).
    """

    name: str = "recommender"

    def __init__(self) -> None:
        self.train: Interactions | None = None
        self.item_ids: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self._tie_order: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)

    def fit(self, interactions: Interactions) -> Self:
        """Learn from the interactions; returns self so `Model().fit(train)` chains."""
        self.train = interactions
        self.item_ids = interactions.item_ids
        self._fit(interactions)
        self._tie_order = np.argsort(-self.train.item_user_counts(), kind="stable")
        return self

    @abstractmethod
    def _fit(self, interactions: Interactions) -> None: ...

    @abstractmethod
    def _score(self, rows: Ids, customer_ids: Ids) -> np.ndarray:
        """Scores (len(rows) × len(self.item_ids)) of a batch; `rows` are matrix rows, -1 for
        customers the model never saw. -inf marks items that must not be recommended."""

    def _batch_size(self) -> int:
        return max(1, SCORE_BATCH_CELLS // max(len(self.item_ids), 1))

    def recommend(
        self,
        customer_ids: npt.ArrayLike,
        k: int = 10,
        exclude_seen: bool = True,
        *,
        items: npt.ArrayLike | None = None,
        exclude: pd.DataFrame | None = None,
    ) -> Recommendations:
        """The top k products per customer, best first, with their scores.

        `exclude_seen` drops the products a customer interacted with in training; `items`, when
        given, restricts the candidates to those product ids (business filters: active, in
        stock); `exclude` drops given (customer_id, product_id) pairs (e.g. what each customer
        bought before, for lists of products new to them). Customers the model cannot score
        (cold, for models without a cold-start answer) get an all-padding row.
        """
        if self.train is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        customers = np.asarray(customer_ids, dtype=np.int64).ravel()
        rows = self.train.user_rows(customers)
        ids = np.full((len(customers), k), -1, dtype=np.int64)
        scores = np.full((len(customers), k), np.nan)
        banned = None if items is None else ~np.isin(self.item_ids, np.asarray(items))
        excluded = pairs_matrix(customers, self.item_ids, exclude)
        step = self._batch_size()
        for start in range(0, len(customers), step):
            sl = slice(start, start + step)
            batch = np.asarray(self._score(rows[sl], customers[sl]), dtype=np.float64)
            if exclude_seen:
                mask_seen(batch, rows[sl], self._seen_matrix())
            if excluded is not None:
                mask_seen(batch, np.arange(len(customers))[sl], excluded)
            if banned is not None:
                batch[:, banned] = -np.inf
            cols, vals = top_k(batch, k, self._tie_order)
            ids[sl] = np.where(cols >= 0, self.item_ids[np.maximum(cols, 0)], -1)
            scores[sl] = vals
        return Recommendations(customers, ids, scores)

    def _seen_matrix(self) -> sp.csr_matrix:
        """Seen items in the model's item universe (rows = training rows)."""
        assert self.train is not None
        return self.train.matrix


def pairs_matrix(customers: Ids, item_ids: Ids, pairs: pd.DataFrame | None) -> sp.csr_matrix | None:
    """(customer_id, product_id) pairs as a len(customers) × len(item_ids) 0/1 matrix (rows:
    positions in `customers`, repeated ids all marked; columns: positions in the sorted
    `item_ids`); None without pairs."""
    if pairs is None or pairs.empty or len(customers) == 0 or len(item_ids) == 0:
        return None
    positions = pd.DataFrame({"customer_id": customers, "row": np.arange(len(customers))})
    hit = positions.merge(pairs[["customer_id", "product_id"]], on="customer_id")
    products = hit["product_id"].to_numpy(np.int64)
    cols = np.clip(np.searchsorted(item_ids, products), 0, len(item_ids) - 1)
    ok = item_ids[cols] == products
    data = np.ones(int(ok.sum()), dtype=np.float32)
    rows = hit["row"].to_numpy()[ok]
    return sp.csr_matrix((data, (rows, cols[ok])), shape=(len(customers), len(item_ids)))


def mask_seen(scores: np.ndarray, rows: npt.NDArray[np.int64], seen: sp.csr_matrix) -> None:
    """Set the scores of already-seen items to -inf, in place (known rows only)."""
    known = np.flatnonzero(rows >= 0)
    if len(known) == 0:
        return
    sub = seen[rows[known]]
    r = np.repeat(known, np.diff(sub.indptr))
    scores[r, sub.indices] = -np.inf


def top_k(
    scores: np.ndarray, k: int, tie_order: npt.NDArray[np.int64] | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Exact top k per row, best first: (column indices, scores), padded with (-1, NaN).

    Non-finite scores are never selected. Equal scores are ordered by `tie_order` (a permutation
    of the columns, preferred first; the training popularity), so results are deterministic and
    sensible when a model has no signal. Linear in the batch size (no full sort): one
    `argpartition` per row picks k candidates; only rows where more columns tie at the k-th
    score than there are slots left take the slower path that picks among the ties by
    `tie_order`.
    """
    b, n = scores.shape
    cols_out = np.full((b, k), -1, dtype=np.int64)
    vals_out = np.full((b, k), np.nan)
    kk = min(k, n)
    if b == 0 or kk == 0:
        return cols_out, vals_out
    order = np.arange(n) if tie_order is None or len(tie_order) != n else tie_order
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)  # preference of each column among equals (0 = first)
    # float32 scores stay float32 (half the bytes to partition); anything else is float64
    s = scores if scores.dtype == np.float32 else np.asarray(scores, dtype=np.float64)
    bad = ~np.isfinite(s)
    if bad.any():  # (np.where over the whole batch costs as much as the partition)
        s = s.copy()
        s[bad] = -np.inf
    cand = np.argpartition(s, n - kk, axis=1)[:, n - kk :]
    vals = np.take_along_axis(s, cand, axis=1)
    threshold = vals.min(axis=1, keepdims=True)
    surplus = ((s >= threshold).sum(axis=1) > kk) & np.isfinite(threshold[:, 0])
    sort = np.lexsort((rank[cand], -vals), axis=-1)
    cand, vals = np.take_along_axis(cand, sort, axis=1), np.take_along_axis(vals, sort, axis=1)
    ok = np.isfinite(vals)
    cols_out[:, :kk] = np.where(ok, cand, -1)
    vals_out[:, :kk] = np.where(ok, vals, np.nan)
    rows = np.flatnonzero(surplus)
    if len(rows):
        cols_out[rows], vals_out[rows] = _top_k_among_ties(s[rows], k, kk, order)
    return cols_out, vals_out


def _top_k_among_ties(
    s: np.ndarray, k: int, kk: int, order: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """top_k for rows whose k-th score is shared by more columns than fit: the tied columns
    are taken in `order` (a cumulative count over the permuted row)."""
    b = s.shape[0]
    cols_out = np.full((b, k), -1, dtype=np.int64)
    vals_out = np.full((b, k), np.nan)
    s = s[:, order]
    threshold = -np.partition(-s, kk - 1, axis=1)[:, kk - 1 : kk]
    above = s > threshold
    need = kk - above.sum(axis=1, keepdims=True)
    tie = (s == threshold) & np.isfinite(s)
    take = above | (tie & (np.cumsum(tie, axis=1) <= need))
    r, p = np.nonzero(take)
    v = s[r, p]
    sort = np.lexsort((p, -v, r))
    r, p, v = r[sort], p[sort], v[sort]
    starts = np.searchsorted(r, np.arange(b))
    slot = np.arange(len(r)) - starts[r]
    cols_out[r, slot] = order[p]
    vals_out[r, slot] = v
    return cols_out, vals_out


def normalise_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (zero rows stay zero): cosine similarity becomes a product."""
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ matrix)


def top_k_sparse(dense: np.ndarray, k: int) -> sp.csr_matrix:
    """The k largest positive values of each row of a dense block, as a sparse block: how
    neighbour lists are kept (a bounded k per row, so the similarity matrix stays small)."""
    cols, vals = top_k(np.where(dense > 0, dense, -np.inf), k)
    ok = cols >= 0
    r = np.repeat(np.arange(dense.shape[0]), ok.sum(axis=1))
    return sp.csr_matrix(
        (vals[ok].astype(np.float32), (r, cols[ok])), shape=dense.shape, dtype=np.float32
    )
