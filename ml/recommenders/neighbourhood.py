"""Neighbourhood collaborative filtering: item-based and user-based, over the CSR matrix.

Item-based: two products are similar when the same customers take both. Similarities are
computed as sparse products (`sparse_dot_topn`'s, on its own threads), a chunk of items at a
time, and only the top-k neighbours of each item are kept, read from the product's cells (or
its dense block where most pairs meet), so memory is bounded by chunk × items plus items × k
(the result) rather than items². A customer's score for a product is the sum, over the
products in their history, of (history weight × similarity). In production the co-occurrence
runs in Spark SQL; this is the reference implementation (and the one used at demo scale).

User-based: the k customers most similar to a customer (cosine over their histories) vote for
their products, weighted by similarity. Computed at recommend time, a batch of customers at a
time, against a neighbour pool: the `pool` customers with the most history (every customer up
to that size), so scoring stays linear in the customers scored at any size (without it, every
customer against every customer: quadratic). The similarities and their top k come from one
call of `sparse_dot_topn` (a sparse product that keeps each row's top n as it goes): 4× faster
than the product, a dense block and a top k, measured on 2,000 customers against a pool of
20,000, with the same neighbours. Tastes are matched without the common products (taken by
more than `USER_KNN_COMMON_SHARE` of the pool), as text search leaves out stop words: at 1 M
customers the ten most common made two thirds of the search's work, and they still get their
votes.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from sparse_dot_topn import sp_matmul, sp_matmul_topn

from ml.interactions import Interactions
from ml.recommenders.base import (
    SCORE_BATCH_CELLS,
    Ids,
    SparseScored,
    normalise_rows,
    runs,
    top_k_of_cells,
    top_k_sparse,
)

# neighbours of user-based CF are drawn from this many customers (the most active)
USER_KNN_POOL = 20_000
# products taken by more than this share of the pool are left out of whose tastes match:
# like stop words, they say little, and they were most of the search (docs/ml.md)
USER_KNN_COMMON_SHARE = 0.1
# sparse_dot_topn holds the GIL: its own threads are what uses the cores
TOPN_THREADS = min(4, os.cpu_count() or 1)


def item_similarity(
    matrix: sp.csr_matrix,
    k: int = 50,
    metric: Literal["cosine", "jaccard"] = "cosine",
    chunk_cells: int = SCORE_BATCH_CELLS,
) -> sp.csr_matrix:
    """Top-k item-item similarity (items × items, row i = the neighbours of item i, no self).

    cosine: weighted item vectors (columns of `matrix`) normalised to unit length;
    jaccard: |customers of i ∩ customers of j| / |customers of i ∪ customers of j|.
    """
    n_items = matrix.shape[1]
    if metric == "cosine":
        items = normalise_rows(sp.csr_matrix(matrix.T, dtype=np.float32))
    elif metric == "jaccard":
        items = sp.csr_matrix(matrix.T.astype(bool), dtype=np.float32)
    else:
        raise ValueError(f"unknown metric {metric!r}")
    sizes = np.diff(items.indptr).astype(np.float64)
    # CSR: a CSC right-hand side is converted to CSR again for every chunk (5.7× slower)
    items_t = sp.csr_matrix(items.T)
    step = max(1, chunk_cells // max(n_items, 1))
    blocks = []
    for start in range(0, n_items, step):
        stop = min(start + step, n_items)
        block = sp_matmul(items[start:stop], items_t, n_threads=TOPN_THREADS)
        rows = np.arange(stop - start)
        if block.nnz > len(rows) * n_items // 4:  # most pairs meet (content's shared words)
            # cosine is the product itself: its float32 cells are ranked as they are (the
            # same order as in float64, half the bytes to partition)
            dense = block.toarray() if metric == "cosine" else block.toarray().astype(np.float64)
            dense = _similarity(dense, sizes[start:stop, None], sizes[None, :], metric)
            dense[rows, start + rows] = 0.0  # no item is its own neighbour
            blocks.append(top_k_sparse(dense, k))
            continue
        # most pairs of items never meet: the chunk's co-occurrences as cells
        r = np.repeat(rows, np.diff(block.indptr))
        c, v = block.indices.astype(np.int64), block.data.astype(np.float64)
        v = _similarity(v, sizes[start + r], sizes[c], metric)
        other = c != start + r
        blocks.append(top_k_of_cells(r[other], c[other], v[other], (len(rows), n_items), k))
    return sp.csr_matrix(sp.vstack(blocks, format="csr")) if blocks else sp.csr_matrix((0, 0))


def _similarity(
    together: np.ndarray, size_a: np.ndarray, size_b: np.ndarray, metric: str
) -> np.ndarray:
    """Similarity from the product of two item vectors (cosine: unit vectors, so the product
    itself; jaccard: customers in common over customers of either)."""
    if metric == "cosine":
        return together
    union = size_a + size_b - together
    return np.divide(together, union, out=np.zeros_like(together), where=union > 0)


def product_top(a: sp.csr_matrix, b: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """The `n` largest positive cells of each row of a @ b, kept as the product is computed."""
    if a.shape[0] == 0 or b.shape[1] == 0:
        return sp.csr_matrix((a.shape[0], b.shape[1]), dtype=np.float32)
    return sp_matmul_topn(a, b, top_n=n, threshold=0.0, n_threads=TOPN_THREADS)


def neighbours_frame(
    similarity: sp.csr_matrix, item_ids: npt.NDArray[np.int64], value: str = "similarity"
) -> pd.DataFrame:
    """A top-k similarity matrix as rows (product_id, rank, similar_product_id, <value>)."""
    coo = similarity.tocoo()
    frame = pd.DataFrame(
        {
            "product_id": item_ids[coo.row],
            "similar_product_id": item_ids[coo.col],
            value: coo.data.astype(np.float64),
        }
    ).sort_values(["product_id", value, "similar_product_id"], ascending=[True, False, True])
    frame.insert(1, "rank", frame.groupby("product_id").cumcount() + 1)
    return frame.reset_index(drop=True)


class ItemKNN(SparseScored):
    """Item-based CF with cosine or Jaccard similarity and `neighbours` neighbours per item."""

    name = "item_knn"

    def __init__(
        self,
        neighbours: int = 50,
        metric: Literal["cosine", "jaccard"] = "cosine",
        use_weights: bool = True,
    ) -> None:
        super().__init__()
        self.neighbours = neighbours
        self.metric = metric
        self.use_weights = use_weights
        self.similarity: sp.csr_matrix = sp.csr_matrix((0, 0))
        self.name = f"item_knn_{metric}"

    def _history(self) -> sp.csr_matrix:
        assert self.train is not None
        m = self.train.matrix
        return m if self.use_weights else sp.csr_matrix(m.astype(bool), dtype=np.float32)

    def _fit(self, interactions: Interactions) -> None:
        self.similarity = item_similarity(interactions.matrix, self.neighbours, self.metric)

    def _sparse_score(self, rows: Ids) -> sp.csr_matrix:
        return self._history()[rows] @ self.similarity

    def _sparse_top(self, rows: Ids, n: int) -> sp.csr_matrix:
        return product_top(self._history()[rows], self.similarity, n)

    def similar_items(self) -> pd.DataFrame:
        """The neighbour lists: (product_id, rank, similar_product_id, similarity)."""
        return neighbours_frame(self.similarity, self.item_ids)


class UserKNN(SparseScored):
    """User-based CF: the `neighbours` most cosine-similar customers among the `pool` customers
    with the most history vote with their items; products more than `common_share` of the pool
    took are left out of the similarity (not of the votes)."""

    name = "user_knn"

    def __init__(
        self,
        neighbours: int = 50,
        use_weights: bool = True,
        pool: int = USER_KNN_POOL,
        common_share: float = USER_KNN_COMMON_SHARE,
    ) -> None:
        super().__init__()
        self.neighbours = neighbours
        self.use_weights = use_weights
        self.pool = pool
        self.common_share = common_share
        self._users: sp.csr_matrix = sp.csr_matrix((0, 0))
        self._pool_t: sp.csr_matrix = sp.csr_matrix((0, 0))
        self._pool_votes: sp.csr_matrix = sp.csr_matrix((0, 0))
        self._pool_position: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)

    def _fit(self, interactions: Interactions) -> None:
        m = interactions.matrix
        votes = m if self.use_weights else sp.csr_matrix(m.astype(bool), dtype=np.float32)
        self._users = normalise_rows(votes)
        # the customers with the most products, the first rows among equals
        members = np.sort(np.argsort(-np.diff(m.indptr), kind="stable")[: self.pool])
        self._pool_t = sp.csr_matrix(self._users[members].T)  # products × pool
        takers = np.diff(self._pool_t.indptr)
        common = takers > self.common_share * len(members)
        if common.any():  # emptied in place: the other cells stay as they are, in order
            self._pool_t.data[np.repeat(common, takers)] = 0.0
            self._pool_t.eliminate_zeros()
        self._pool_votes = sp.csr_matrix(votes[members])
        self._pool_position = np.full(m.shape[0], -1, dtype=np.int64)
        self._pool_position[members] = np.arange(len(members))

    def _sparse_score(self, rows: Ids) -> sp.csr_matrix:
        return self.neighbours_of(rows) @ self._pool_votes

    def _sparse_top(self, rows: Ids, n: int) -> sp.csr_matrix:
        return product_top(self.neighbours_of(rows), self._pool_votes, n)

    def neighbours_of(self, rows: Ids) -> sp.csr_matrix:
        """Each row's `neighbours` most similar pool customers (positive similarities only;
        a customer is not their own neighbour): len(rows) × pool."""
        k = self.neighbours
        if len(rows) == 0 or k == 0 or self._pool_t.shape[1] == 0:
            return sp.csr_matrix((len(rows), self._pool_t.shape[1]), dtype=np.float32)
        # one more than needed: the customer may be in the pool, as their own best match
        found = sp.csr_matrix(
            sp_matmul_topn(
                self._users[rows], self._pool_t, top_n=k + 1, threshold=0.0, n_threads=TOPN_THREADS
            )
        )
        found.sort_indices()  # by pool column: the votes are added up in one order
        r = np.repeat(np.arange(len(rows)), np.diff(found.indptr))
        c, v = found.indices, found.data
        keep = c != self._pool_position[rows][r]
        # a row with k + 1 others drops its worst, among equals the last pool column: no sort
        # of every cell (a lexsort was a third of the search's time at 1 M customers)
        over = np.flatnonzero(keep & (np.bincount(r[keep], minlength=len(rows)) > k)[r])
        if len(over):
            starts, lengths = runs(r[over])
            group = np.repeat(np.arange(len(starts)), lengths)
            worst = v[over] == np.minimum.reduceat(v[over], starts)[group]
            last = np.maximum.reduceat(np.where(worst, c[over], -1), starts)[group]
            keep[over[worst & (c[over] == last)]] = False
        indptr = np.concatenate(([0], np.cumsum(np.bincount(r[keep], minlength=len(rows)))))
        return sp.csr_matrix((v[keep], c[keep], indptr), shape=found.shape, dtype=np.float32)
