"""Buying again: what a retailer's customers mostly do.

`BuyAgain` ranks the products a customer has bought by how many times they bought them, the
latest purchase first among equals. It proposes nothing else: the callers fill the rest of a
list (popularity of the last weeks), which makes it the "buy again, then popularity" baseline
every model is compared with.
"""

from __future__ import annotations

import numpy as np

from ml.interactions import Interactions
from ml.recommenders.base import Ids, Recommender


class BuyAgain(Recommender):
    """Fitted on purchases (weight = times bought, with purchase times): scores are the number
    of purchases plus less than one for recency, so the count decides and the latest purchase
    breaks ties; products never bought score -inf."""

    name = "buy_again"

    def __init__(self) -> None:
        super().__init__()
        self._recency: np.ndarray | None = None  # per stored matrix entry, in [0, 0.5)

    def _fit(self, interactions: Interactions) -> None:
        matrix = interactions.matrix
        self._recency = np.zeros(matrix.nnz, dtype=np.float64)
        if interactions.event_at is None or not len(interactions.event_at):
            return
        # the latest purchase of each (customer, product), scaled over all purchase times
        n_items = matrix.shape[1]
        at = interactions.event_at.astype("datetime64[s]").astype(np.int64)
        keys = interactions.event_user.astype(np.int64) * n_items + interactions.event_item
        order = np.argsort(keys, kind="stable")
        unique, starts = np.unique(keys[order], return_index=True)
        latest = np.maximum.reduceat(at[order], starts)
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        entry_keys = rows * n_items + matrix.indices  # CSR order, the order of matrix.data
        pos = np.clip(np.searchsorted(unique, entry_keys), 0, len(unique) - 1)
        found = unique[pos] == entry_keys
        span = max(int(at.max() - at.min()), 1)
        self._recency = np.where(found, 0.5 * (latest[pos] - at.min()) / span, 0.0)

    def _score(self, rows: Ids, customer_ids: Ids) -> np.ndarray:
        assert self.train is not None and self._recency is not None
        matrix = self.train.matrix
        scores = np.full((len(rows), len(self.item_ids)), -np.inf)
        for i, row in enumerate(rows.tolist()):
            if row < 0:
                continue
            start, end = matrix.indptr[row], matrix.indptr[row + 1]
            cols = matrix.indices[start:end]
            scores[i, cols] = matrix.data[start:end] + self._recency[start:end]
        return scores
