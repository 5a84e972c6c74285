"""EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019): item-item
collaborative filtering whose weights are learnt rather than measured.

Each product's column of the weight matrix B is a ridge regression of who took that product on
who took every other product, with B's diagonal held at zero so that a product cannot explain
itself; that problem has a closed form, B_ij = -P_ij / P_jj (i ≠ j) with P = (XᵀX + λI)⁻¹,
X the customers × products 0/1 matrix of who took what. A customer's scores are their row of X times
B. Item-kNN adds up similarities measured pair by pair; EASE fits all of them at once, so two
products that only ever go together with a third do not count twice.

B is dense: only the `max_items` products most customers took are modelled (max_items² float32:
4 MB at 1,000); the others are left to the other generators. The model's products (`item_ids`)
are those, so a batch is scored and its top k taken over them, not over the whole catalogue.
cornac's and LensKit's EASE score one customer per call; the ranker asks for 2,000 at a time, so
the scoring here is one sparse × dense product per batch.
"""

from __future__ import annotations

import os
from typing import Self

import numpy as np
import scipy.sparse as sp
from scipy.linalg import cho_factor, cho_solve
from threadpoolctl import threadpool_limits

from ml.interactions import Interactions
from ml.recommenders.base import Ids, Recommender

# the products modelled: B holds max_items² float32 (4 MB). Its scoring slows with B's size
# beyond the caches: 10,000 customers over 50,000 Zipf-popular products on one thread took
# 55,000 customers/s with 1,000 products modelled (39 % of the interactions), 27,000/s with
# 2,000 (46 %), 18,000/s with 3,000 (51 %) and 6,500/s with 5,000 (58 %); in the ranker's
# scoring at 200,000 customers it is ~12 % of the time with 1,000 (docs/ml_log.md)
EASE_MAX_ITEMS = 1_000
# λ, the ridge penalty, in co-occurrence counts (the paper's data sets took 200-1,000)
EASE_REGULARIZATION = 200.0


class EASE(Recommender):
    """Steck's EASE over the `max_items` products most customers took, with ridge penalty
    `regularization`; customers the model never saw, and the other products, get no score."""

    name = "ease"

    def __init__(
        self, regularization: float = EASE_REGULARIZATION, max_items: int = EASE_MAX_ITEMS
    ) -> None:
        super().__init__()
        if regularization <= 0 or max_items <= 0:
            raise ValueError(
                f"EASE needs regularization > 0 and max_items > 0, "
                f"got {regularization} and {max_items}"
            )
        self.regularization = regularization
        self.max_items = max_items
        self.columns = np.empty(0, dtype=np.int64)  # the modelled products' matrix columns
        self.weights = np.empty((0, 0), dtype=np.float32)  # B over those columns
        self.taken = sp.csr_matrix((0, 0), dtype=np.float32)  # customers × those columns, 0/1

    def fit(self, interactions: Interactions) -> Self:
        """Learn B; the model's products (`item_ids`) are the modelled ones only, so a batch
        is scored and its top k taken over those, not the whole catalogue."""
        super().fit(interactions)
        self.item_ids = interactions.item_ids[self.columns]
        self._tie_order = np.argsort(-interactions.item_user_counts()[self.columns], kind="stable")
        return self

    def _fit(self, interactions: Interactions) -> None:
        takers = interactions.item_user_counts()
        taken = np.flatnonzero(takers > 0)
        most = taken[np.argsort(-takers[taken], kind="stable")[: self.max_items]]
        self.columns = np.sort(most)
        # who took which modelled product, 0/1: what B is learnt from and each batch is scored
        # from, kept so that scoring does not slice the columns again every batch
        x = sp.csr_matrix(interactions.matrix[:, self.columns], dtype=np.float32)
        x.data[:] = 1.0
        self.taken = x
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.regularization
        # XᵀX + λI is symmetric positive definite: its Cholesky inverse, on every core
        with threadpool_limits(limits=os.cpu_count(), user_api="blas"):
            inverse = cho_solve(cho_factor(gram, overwrite_a=True), np.eye(len(gram)))
        weights = inverse / -np.diag(inverse)
        np.fill_diagonal(weights, 0.0)
        self.weights = weights.astype(np.float32)

    def _seen_matrix(self) -> sp.csr_matrix:
        return self.taken

    def _score(self, rows: Ids, customer_ids: Ids) -> np.ndarray:
        scores = np.full((len(rows), len(self.columns)), -np.inf, dtype=np.float32)
        known = np.flatnonzero(rows >= 0)
        if len(known) and len(self.columns):
            scores[known] = self.taken[rows[known]] @ self.weights
        return scores
