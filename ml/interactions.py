"""The customer × product interaction matrix every recommender trains on.

Spark builds `gold.customer_product_interactions` (or raw events); what reaches Python is a set
of arrays (customer ids, product ids, weights, optionally timestamps), never a whole fact table
in pandas. `Interactions` turns them into a scipy CSR matrix (rows = customers, columns =
products, duplicates summed) plus the id maps that translate matrix indices back to ERP ids.
Timestamps, when given, are kept per interaction (as column index + time + weight) for the
time-aware models (trending); the CSR matrix alone would lose them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

IdArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Interactions:
    """A users × items CSR matrix of implicit-feedback weights and the ids of its rows/columns.

    `user_ids[row]` is the customer id of a row and `item_ids[col]` the product id of a column;
    both are sorted, so lookups are a `searchsorted`. `event_item`, `event_at`, `event_weight`
    `event_user` are the individual interactions (column index, time, weight, row index) when
    times were given.
    """

    matrix: sp.csr_matrix
    user_ids: IdArray
    item_ids: IdArray
    event_item: npt.NDArray[np.int32] | None = None
    event_at: npt.NDArray[np.datetime64] | None = None
    event_weight: npt.NDArray[np.float32] | None = None
    event_user: npt.NDArray[np.int32] | None = None

    @classmethod
    def from_arrays(
        cls,
        customer_ids: npt.ArrayLike,
        product_ids: npt.ArrayLike,
        weights: npt.ArrayLike | None = None,
        at: npt.ArrayLike | None = None,
        *,
        user_ids: npt.ArrayLike | None = None,
        item_ids: npt.ArrayLike | None = None,
    ) -> Interactions:
        """Build the matrix from parallel arrays (one element per interaction).

        Repeated (customer, product) pairs are summed. `user_ids`/`item_ids` fix the universe
        (e.g. the whole catalogue, so products nobody touched still get a column); pairs outside
        it are dropped. Without them the universe is the ids that occur.
        """
        customers = np.asarray(customer_ids, dtype=np.int64)
        products = np.asarray(product_ids, dtype=np.int64)
        if customers.shape != products.shape:
            raise ValueError("customer_ids and product_ids must have the same length")
        w = (
            np.ones(len(customers), dtype=np.float32)
            if weights is None
            else np.asarray(weights, dtype=np.float32)
        )
        users = np.unique(customers if user_ids is None else np.asarray(user_ids, dtype=np.int64))
        items = np.unique(products if item_ids is None else np.asarray(item_ids, dtype=np.int64))
        rows, row_ok = _lookup(users, customers)
        cols, col_ok = _lookup(items, products)
        keep = row_ok & col_ok
        matrix = sp.csr_matrix(
            (w[keep], (rows[keep], cols[keep])), shape=(len(users), len(items)), dtype=np.float32
        )
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        if at is None:
            return cls(matrix, users, items)
        times = to_datetime64(at)
        return cls(
            matrix,
            users,
            items,
            event_item=cols[keep].astype(np.int32),
            event_at=times[keep],
            event_weight=w[keep],
            event_user=rows[keep].astype(np.int32),
        )

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def user_rows(self, customer_ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Row index of each customer, -1 for customers not in the matrix (cold)."""
        rows, ok = _lookup(self.user_ids, np.asarray(customer_ids, dtype=np.int64))
        return np.where(ok, rows, -1)

    def item_cols(self, product_ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Column index of each product, -1 for products not in the matrix."""
        cols, ok = _lookup(self.item_ids, np.asarray(product_ids, dtype=np.int64))
        return np.where(ok, cols, -1)

    def item_user_counts(self) -> npt.NDArray[np.int64]:
        """Distinct customers per item: the popularity used for baselines and novelty."""
        return np.bincount(self.matrix.indices, minlength=self.shape[1]).astype(np.int64)

    def seen(self, customer_id: int) -> IdArray:
        """Product ids a customer interacted with (empty for unknown customers)."""
        row = int(self.user_rows([customer_id])[0])
        if row < 0:
            return np.empty(0, dtype=np.int64)
        m = self.matrix
        return self.item_ids[m.indices[m.indptr[row] : m.indptr[row + 1]]]

    def reindex_items(self, item_ids: npt.ArrayLike) -> Interactions:
        """The same interactions over another item universe (e.g. the full catalogue, for the
        content model, which can recommend products nobody has interacted with yet). Items
        missing from the new universe are dropped."""
        items = np.unique(np.asarray(item_ids, dtype=np.int64))
        if np.array_equal(items, self.item_ids):  # already so: no copy of every interaction
            return self
        coo = self.matrix.tocoo()
        new_cols, ok = _lookup(items, self.item_ids[coo.col])
        matrix = sp.csr_matrix(
            (coo.data[ok], (coo.row[ok], new_cols[ok])),
            shape=(self.shape[0], len(items)),
            dtype=np.float32,
        )
        if self.event_item is None:
            return Interactions(matrix, self.user_ids, items)
        ev_cols, ok = _lookup(items, self.item_ids[self.event_item])
        return Interactions(
            matrix,
            self.user_ids,
            items,
            event_item=ev_cols[ok].astype(np.int32),
            event_at=None if self.event_at is None else self.event_at[ok],
            event_weight=None if self.event_weight is None else self.event_weight[ok],
            event_user=None if self.event_user is None else self.event_user[ok],
        )


def to_datetime64(values: npt.ArrayLike) -> npt.NDArray[np.datetime64]:
    """Timestamps as naive UTC datetime64[s] (pandas/arrow timestamps, tz-aware or not)."""
    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return index.tz_localize(None).to_numpy().astype("datetime64[s]")


def _lookup(
    universe: npt.NDArray[np.int64], ids: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Positions of `ids` in the sorted `universe` and whether each was found."""
    if len(universe) == 0:
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    pos = np.searchsorted(universe, ids)
    pos = np.clip(pos, 0, len(universe) - 1)
    return pos.astype(np.int64), universe[pos] == ids


def day_number(value: object) -> int:
    """A date (or a timestamp's day) as a day number (days since 1970-01-01)."""
    return int(np.datetime64(value, "D").astype(np.int64))


def day_numbers(dates: pd.Series) -> npt.NDArray[np.int64]:
    """Dates (datetime64 or date objects) as day numbers (days since 1970-01-01)."""
    if dates.dtype.kind != "M":  # to_datetime of datetime64 maps every row through a cache
        dates = pd.to_datetime(dates)
    return dates.to_numpy("datetime64[D]").astype(np.int64)


def decayed(
    daily: pd.DataFrame, as_of: object, half_life_days: float, **universe: npt.ArrayLike
) -> Interactions:
    """The interaction matrix as of a day from daily rows (customer_id, product_id,
    interaction_date, weight, at): each day's weight halved every half-life before `as_of` (the
    decay of gold.customer_product_interactions)."""
    age = day_number(as_of) - day_numbers(daily["interaction_date"])
    weight = daily["weight"].to_numpy(np.float64) * np.power(0.5, age / half_life_days)
    return Interactions.from_arrays(
        daily["customer_id"], daily["product_id"], weight, daily["at"], **universe
    )
