"""Matrix factorisation with `implicit`: ALS (Hu, Koren & Volinsky) and BPR, on the CPU.

Both learn a latent vector per customer and per product from the users × items CSR matrix
(implicit >= 0.5 takes user_items, rows = users); a customer's score for a product is the dot
product. Confidence scaling: the matrix holds interaction weights r; ALS fits preference 1 on
non-zero cells with confidence alpha · r (and 0 with confidence 1 elsewhere), so `alpha` sets how
much an observed interaction outweighs an unobserved one. BPR ignores magnitudes (it samples
positive/negative pairs) so it has no alpha.

BLAS is capped to one thread around fitting: implicit parallelises itself (`num_threads`), and a
threaded OpenBLAS underneath it is up to 10x slower (see ml/__init__.py).

The top k of a batch is implicit's own (`implicit.cpu.topk`: the product and a C++ selection of
100 customers at a time, on its own threads), with the lists of the dense batch × catalogue
top-k every recommender has: 3× faster on random factors, 7× on the benchmark's ALS at 1 M
customers × 50,000 products (docs/ml.md). Equal scores, rare in a dot product of floats,
come in any order.

Without filters, a large catalogue is not scanned whole (`_pruned_top`): the products are held
longest vector first, and a customer's top k among the first n is their top k of all once its
k-th score reaches |customer| × the length of product n + 1 (Cauchy–Schwarz: no later product
can score more). The first 1,024 are scanned, then twice as many for the customers not yet
settled, and so on. Popular products have the longest vectors: at 1 M customers × 50,000
products, about 4× less CPU for the same lists (docs/ml.md).
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt
from implicit.cpu.topk import topk
from threadpoolctl import threadpool_limits

from ml.interactions import Interactions
from ml.recommenders.base import Ids, Masks, Recommender

# customers per call of implicit's top k (it scores 100 at a time, whatever the call's size)
TOPK_BATCH = 10_000
TOPK_THREADS = min(2, os.cpu_count() or 1)
# catalogues of more than twice this many products are scanned a prefix at a time
# (`_pruned_top`), this many first
PRUNED_FIRST_ITEMS = 1_024
# its many small calls gain nothing from implicit's threads: the ranker's scoring threads
# already keep the cores busy (3,500 -> 3,850 customers/s at 1 M, docs/ml.md)
PRUNED_THREADS = 1


class _Factorization(Recommender):
    """Scores = user_factors[rows] @ item_factors.T; customers the model never saw get nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.model: object | None = None
        self.user_factors: np.ndarray = np.empty((0, 0), dtype=np.float32)
        self.item_factors: np.ndarray = np.empty((0, 0), dtype=np.float32)

    def _build(self) -> object:
        raise NotImplementedError

    def _fit(self, interactions: Interactions) -> None:
        with threadpool_limits(limits=1, user_api="blas"):
            model = self._build()
            model.fit(interactions.matrix.astype(np.float32), show_progress=False)  # type: ignore[attr-defined]
        self.model = model
        self.user_factors = np.asarray(model.user_factors)  # type: ignore[attr-defined]
        self.item_factors = np.asarray(model.item_factors)  # type: ignore[attr-defined]

    def _score(self, rows: Ids, customer_ids: Ids) -> np.ndarray:
        dtype = np.result_type(self.user_factors, self.item_factors)  # float32 from implicit
        scores = np.full((len(rows), len(self.item_ids)), -np.inf, dtype=dtype)
        known = rows >= 0
        scores[known] = self.user_factors[rows[known]] @ self.item_factors.T
        return scores

    def _batch_size(self) -> int:
        return TOPK_BATCH

    def _top_of_batch(
        self, rows: Ids, customers: Ids, k: int, masks: Masks
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        ids = np.full((len(rows), k), -1, dtype=np.int64)
        vals = np.full((len(rows), k), np.nan)
        known = np.flatnonzero(rows >= 0)  # customers the model never saw: padding only
        kk = min(k, len(self.item_ids))
        if len(known) == 0 or kk == 0:
            return ids, vals
        queries = self.user_factors[rows[known]]
        if masks.empty and len(self.item_ids) > 2 * max(PRUNED_FIRST_ITEMS, kk):
            cols, scores = self._pruned_top(queries, kk)
        else:
            cols, scores = topk(
                self.item_factors,
                queries,
                kk,
                filter_query_items=masks.of(known).cells(rows[known]),
                filter_items=None if masks.banned is None else np.flatnonzero(masks.banned),
                num_threads=TOPK_THREADS,
            )
        ok = scores > -np.finfo(scores.dtype).max  # implicit's mark of a filtered cell
        ids[known, :kk] = np.where(ok, self.item_ids[cols], -1)
        vals[known, :kk] = np.where(ok, scores, np.nan)
        return ids, vals

    def _pruned_top(
        self, queries: np.ndarray, k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """implicit's top k of every query over the whole catalogue, scanning only as many of
        the longest product vectors as settle it (module docstring)."""
        order, factors, lengths = self._by_length
        cols = np.empty((len(queries), k), dtype=np.int64)
        scores = np.empty((len(queries), k), dtype=factors.dtype)
        query_lengths = np.linalg.norm(queries, axis=1)
        pending = np.arange(len(queries))
        size = max(PRUNED_FIRST_ITEMS, k)
        while len(pending):
            whole = size >= len(order)
            # a prefix of a C-ordered array: no copy
            found, best = topk(factors[:size], queries[pending], k, num_threads=PRUNED_THREADS)
            settled = (
                np.ones(len(pending), dtype=bool)
                if whole
                else best[:, -1] >= query_lengths[pending] * lengths[size]
            )
            done = pending[settled]
            cols[done], scores[done] = order[found[settled]], best[settled]
            pending = pending[~settled]
            size *= 2
        return cols, scores

    def __getstate__(self) -> dict:
        # the products in order of length are derived again on first use
        return {k: v for k, v in self.__dict__.items() if k != "_ordered"}

    @property
    def _by_length(self) -> tuple[npt.NDArray[np.int64], np.ndarray, np.ndarray]:
        """(positions of the products, longest vector first; their vectors in that order;
        their lengths in that order), derived once per set of factors."""
        factors = self.item_factors
        ordered = self.__dict__.get("_ordered")
        if ordered is None or ordered[0] is not factors:
            lengths = np.linalg.norm(factors, axis=1)
            order = np.argsort(-lengths, kind="stable")
            ordered = (factors, order, np.ascontiguousarray(factors[order]), lengths[order])
            self._ordered = ordered
        return ordered[1:]


class ALS(_Factorization):
    """implicit's AlternatingLeastSquares (conjugate-gradient solver), CPU."""

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 15,
        random_state: int = 0,
        num_threads: int = 0,
    ) -> None:
        super().__init__()
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _build(self) -> object:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.random_state,
            num_threads=self.num_threads,
        )


class BPR(_Factorization):
    """implicit's BayesianPersonalizedRanking (pairwise ranking loss, SGD), CPU."""

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int = 0,
        num_threads: int = 0,
    ) -> None:
        super().__init__()
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _build(self) -> object:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=self.random_state,
            num_threads=self.num_threads,
        )
