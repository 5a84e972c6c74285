"""Market-basket association rules and "frequently bought together".

A pure numpy/scipy reference implementation (Apriori over a sparse basket × product matrix): it
is what runs on small data and what the Spark SQL version is tested against. For baskets B
(invoices) and itemsets X, Y:

  support(X)         = share of baskets containing X
  confidence(X → Y)  = support(X ∪ Y) / support(X)
  lift(X → Y)        = confidence(X → Y) / support(Y)   (> 1: bought together more than chance)

Pairs always; triples when `max_size=3` (only from frequent pairs whose sub-pairs are all
frequent: the Apriori property keeps the candidate set small). Rules have one consequent.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from ml.interactions import Interactions
from ml.recommenders.base import SCORE_BATCH_CELLS, Ids, SparseScored, top_k_of_cells

RULE_COLUMNS = [
    "antecedent",
    "consequent",
    "size",
    "count",
    "support",
    "confidence",
    "lift",
    "antecedent_support",
    "consequent_support",
]


def association_rules(
    invoice_ids: npt.ArrayLike,
    product_ids: npt.ArrayLike,
    min_support: float = 0.01,
    min_confidence: float = 0.0,
    max_size: int = 3,
) -> pd.DataFrame:
    """All rules X → y with support(X ∪ {y}) ≥ min_support and confidence ≥ min_confidence.

    Input: one element per invoice line (repeats of a product in an invoice count once).
    Output columns: RULE_COLUMNS; `antecedent` is a tuple of product ids (sorted), `count` the
    number of baskets holding the whole itemset. Sorted by size, lift, confidence.
    """
    invoices = np.asarray(invoice_ids)
    products = np.asarray(product_ids, dtype=np.int64)
    basket_keys, rows = np.unique(invoices, return_inverse=True)
    item_ids, cols = np.unique(products, return_inverse=True)
    n_baskets = len(basket_keys)
    if n_baskets == 0:
        return pd.DataFrame(columns=RULE_COLUMNS)
    baskets = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_baskets, len(item_ids))
    )
    baskets.sum_duplicates()
    baskets.data[:] = 1.0  # a product twice in an invoice is one basket membership
    min_count = max(1, math.ceil(min_support * n_baskets - 1e-9))

    item_count = np.diff(baskets.tocsc().indptr)
    frequent = np.flatnonzero(item_count >= min_count)
    fb = sp.csc_matrix(baskets[:, frequent])
    ids = item_ids[frequent]
    counts1 = item_count[frequent].astype(np.float64)
    support1 = counts1 / n_baskets

    co = sp.triu(fb.T @ fb, k=1).tocoo()
    ok = co.data >= min_count
    pa, pb, pc = co.row[ok], co.col[ok], co.data[ok].astype(np.float64)
    rules = []
    for ante, cons in ((pa, pb), (pb, pa)) if len(pa) else ():
        rules.append(
            _rules_frame([ids[ante]], ids[cons], pc, n_baskets, support1[ante], support1[cons])
        )
    if max_size >= 3 and len(pa):
        rules.extend(_triples(fb, ids, pa, pb, pc, support1, min_count, n_baskets))
    if not rules:
        return pd.DataFrame(columns=RULE_COLUMNS)
    out = pd.concat(rules, ignore_index=True)
    out = out[out["confidence"] >= min_confidence]
    out = out.sort_values(["size", "lift", "confidence"], ascending=[True, False, False])
    return out.reset_index(drop=True)[RULE_COLUMNS]


def _rules_frame(
    antecedent_cols: list[npt.NDArray[np.int64]],
    consequent: npt.NDArray[np.int64],
    count: npt.NDArray[np.float64],
    n_baskets: int,
    antecedent_support: npt.NDArray[np.float64],
    consequent_support: npt.NDArray[np.float64],
) -> pd.DataFrame:
    support = count / n_baskets
    confidence = support / antecedent_support
    antecedent = list(zip(*[c.tolist() for c in antecedent_cols], strict=True))
    return pd.DataFrame(
        {
            "antecedent": [tuple(sorted(a)) for a in antecedent],
            "consequent": consequent.astype(np.int64),
            "size": len(antecedent_cols) + 1,
            "count": count.astype(np.int64),
            "support": support,
            "confidence": confidence,
            "lift": confidence / consequent_support,
            "antecedent_support": antecedent_support,
            "consequent_support": consequent_support,
        }
    )


def _triples(
    fb: sp.csc_matrix,
    ids: npt.NDArray[np.int64],
    pa: npt.NDArray[np.int32],
    pb: npt.NDArray[np.int32],
    pc: npt.NDArray[np.float64],
    support1: npt.NDArray[np.float64],
    min_count: int,
    n_baskets: int,
) -> list[pd.DataFrame]:
    """Frequent triples {a < b < c} from the frequent pairs, and their three rules."""
    items_by_basket = sp.csr_matrix(fb.T)
    both = items_by_basket[pa].multiply(items_by_basket[pb])  # pairs × baskets
    counts = sp.csr_matrix(both @ fb).tocoo()  # pairs × items
    pair_count = {(int(a), int(b)): c for a, b, c in zip(pa, pb, pc, strict=True)}
    a, b, c = pa[counts.row], pb[counts.row], counts.col
    keep = (c > b) & (counts.data >= min_count)
    a, b, c, n = a[keep], b[keep], c[keep], counts.data[keep].astype(np.float64)
    sub_ok = np.array(
        [
            (int(x), int(z)) in pair_count and (int(y), int(z)) in pair_count
            for x, y, z in zip(a, b, c, strict=True)
        ],
        dtype=bool,
    )
    a, b, c, n = a[sub_ok], b[sub_ok], c[sub_ok], n[sub_ok]
    if len(a) == 0:
        return []

    def pair_support(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (
            np.array([pair_count[(int(i), int(j))] for i, j in zip(x, y, strict=True)]) / n_baskets
        )

    return [
        _rules_frame([ids[x], ids[y]], ids[z], n, n_baskets, pair_support(x, y), support1[z])
        for x, y, z in ((a, b, c), (a, c, b), (b, c, a))
    ]


def frequently_bought_together(
    rules: pd.DataFrame, top_n: int = 5, by: str = "lift", min_confidence: float = 0.0
) -> pd.DataFrame:
    """Per product, the top_n products most bought with it (pair rules p → q ranked by `by`,
    then confidence): the shape of gold.product_associations."""
    pairs = rules[(rules["size"] == 2) & (rules["confidence"] >= min_confidence)].copy()
    pairs["product_id"] = pairs["antecedent"].map(lambda a: a[0]).astype(np.int64)
    pairs = pairs.rename(columns={"consequent": "other_product_id"})
    secondary = "confidence" if by != "confidence" else "lift"
    pairs = pairs.sort_values(
        ["product_id", by, secondary, "other_product_id"], ascending=[True, False, False, True]
    )
    pairs["rank"] = pairs.groupby("product_id").cumcount() + 1
    pairs = pairs[pairs["rank"] <= top_n]
    columns = ["product_id", "rank", "other_product_id", "count", "support", "confidence", "lift"]
    return pairs[columns].reset_index(drop=True)


class BoughtWith(SparseScored):
    """Products bought in the same basket as what the customer bought: the score of q is the sum,
    over the customer's purchases p (their weights, e.g. recency-decayed), of confidence(p → q).

    Fitted on purchases with their times (`Interactions.from_arrays(..., at=...)`); a basket is a
    customer's purchases of one day (invoices reach the models as daily rows). Only the
    `neighbours` most confident consequents of each product are kept, so memory stays
    products × neighbours. `because` names the purchase behind a recommendation."""

    name = "bought_with"
    empty_is_candidate = False  # nothing bought with anything the customer bought

    def __init__(self, neighbours: int = 50) -> None:
        super().__init__()
        self.neighbours = neighbours
        self.confidence: sp.csr_matrix = sp.csr_matrix((0, 0))

    def _fit(self, interactions: Interactions) -> None:
        n_items = interactions.shape[1]
        if interactions.event_at is None or not len(interactions.event_at):
            self.confidence = sp.csr_matrix((n_items, n_items), dtype=np.float32)
            return
        day = interactions.event_at.astype("datetime64[D]").astype(np.int64)
        keys = interactions.event_user.astype(np.int64) * (day.max() + 1) + day
        _, basket = np.unique(keys, return_inverse=True)
        baskets = sp.csr_matrix(
            (np.ones(len(basket), dtype=np.float32), (basket, interactions.event_item)),
            shape=(int(basket.max()) + 1, n_items),
        )
        baskets.sum_duplicates()
        baskets.data[:] = 1.0  # a product counts once per basket
        by_item = sp.csr_matrix(baskets.T)
        counts = np.asarray(baskets.sum(axis=0), dtype=np.float64).ravel()
        step = max(1, SCORE_BATCH_CELLS // max(n_items, 1))
        blocks = []
        for start in range(0, n_items, step):  # a block of antecedents at a time
            stop = min(start + step, n_items)
            together = sp.csr_matrix(by_item[start:stop] @ baskets)  # pairs that meet only
            r = np.repeat(np.arange(stop - start), np.diff(together.indptr))
            c = together.indices.astype(np.int64)
            # confidence(p → q) = baskets with both / baskets with p
            v = together.data / np.maximum(counts[start + r], 1.0)
            other = c != start + r
            shape = (stop - start, n_items)
            blocks.append(top_k_of_cells(r[other], c[other], v[other], shape, self.neighbours))
        self.confidence = sp.csr_matrix(sp.vstack(blocks, format="csr"))

    def _sparse_score(self, rows: Ids) -> sp.csr_matrix:
        assert self.train is not None
        return self.train.matrix[rows] @ self.confidence

    def because(self, customer_ids: npt.ArrayLike, product_ids: npt.ArrayLike) -> np.ndarray:
        """For each (customer, product) pair, the customer's purchase contributing most to the
        product's score, the first product among equals (-1 when none does)."""
        assert self.train is not None
        rows = self.train.user_rows(customer_ids)
        cols = self.train.item_cols(product_ids)
        out = np.full(len(rows), -1, dtype=np.int64)
        history, rules = self.train.matrix, self._by_consequent
        for i, (row, col) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
            if row < 0 or col < 0:
                continue
            bought = slice(history.indptr[row], history.indptr[row + 1])
            leads = slice(rules.indptr[col], rules.indptr[col + 1])
            # the products both bought and leading to this one (ascending: the first wins ties)
            common, a, b = np.intersect1d(
                history.indices[bought], rules.indices[leads], return_indices=True
            )
            contribution = history.data[bought][a] * rules.data[leads][b]
            if len(common) and contribution.max() > 0:
                out[i] = self.item_ids[common[int(contribution.argmax())]]
        return out

    @cached_property
    def _by_consequent(self) -> sp.csc_matrix:
        """The rules by the product they lead to (each column's antecedents), sorted."""
        rules = sp.csc_matrix(self.confidence)
        rules.sort_indices()
        return rules

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_by_consequent"}  # derived
