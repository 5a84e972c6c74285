"""Small synthetic datasets with known structure, for tests and quick demos of the ML library.

They are not the retail generator (generator/): they are minimal, fast, and built so that the
right answer is known in advance, e.g. customers who mostly buy within one latent cluster of
products (so collaborative filtering must beat popularity), or customers whose purchases follow a
Poisson process that stops at an unobserved "death" (so churn is predictable, but not from
recency alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.customer_models import FEATURE_COLUMNS


@dataclass(frozen=True)
class ClusteredInteractions:
    """Events (customer_id, product_id, at, weight) plus the latent clusters that made them."""

    events: pd.DataFrame
    user_cluster: np.ndarray  # by customer_id - 1
    item_cluster: np.ndarray  # by product_id - 1


def clustered_interactions(
    n_users: int = 300,
    n_items: int = 200,
    n_clusters: int = 5,
    events_per_user: int = 30,
    in_cluster: float = 0.85,
    days: int = 60,
    seed: int = 0,
) -> ClusteredInteractions:
    """Each customer belongs to one of `n_clusters` tastes; each event picks a product of the
    customer's cluster with probability `in_cluster` (else any product), weighted by a Zipf-like
    popularity so that popularity is a real, but beatable, baseline. Times are uniform over
    `days` days from 2025-01-01; ids start at 1."""
    rng = np.random.default_rng(seed)
    user_cluster = rng.integers(0, n_clusters, n_users)
    item_cluster = rng.integers(0, n_clusters, n_items)
    popularity = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.6
    n_events = n_users * events_per_user
    users = np.repeat(np.arange(n_users), events_per_user)
    own = rng.random(n_events) < in_cluster
    items = np.empty(n_events, dtype=np.int64)
    global_p = popularity / popularity.sum()
    items[~own] = rng.choice(n_items, size=int((~own).sum()), p=global_p)
    for c in range(n_clusters):
        members = np.flatnonzero(item_cluster == c)
        pick = own & (user_cluster[users] == c)
        p = popularity[members] / popularity[members].sum()
        items[pick] = rng.choice(members, size=int(pick.sum()), p=p)
    start = np.datetime64("2025-01-01T00:00:00", "s")
    at = start + (rng.random(n_events) * days * 86_400).astype("timedelta64[s]")
    events = pd.DataFrame(
        {
            "customer_id": users + 1,
            "product_id": items + 1,
            "at": at,
            "weight": np.ones(n_events, dtype=np.float32),
        }
    )
    return ClusteredInteractions(events, user_cluster, item_cluster)


def customer_snapshots(
    n_customers: int = 3000,
    cutoffs: tuple[str, ...] = ("2025-01-01", "2025-04-01", "2025-07-01"),
    seed: int = 0,
) -> pd.DataFrame:
    """Per-customer feature snapshots with labels, from a simulated purchase history.

    Each customer registers during 2024, buys at a personal Poisson rate with a personal basket
    size, and stops buying for good at an exponential "death" time nobody observes (the classic
    buy-till-you-die story). Features (ml.customer_models.FEATURES) come from purchases up to
    each cutoff, labels from the 30/90 days after it. Clickstream columns are noisy: they grow
    with recent purchases and, for customers still "alive", with their buying rate (people who
    browse are still around), so they carry signal that recency alone lacks.
    """
    rng = np.random.default_rng(seed)
    origin = np.datetime64("2024-01-01")
    registered = rng.uniform(0, 366, n_customers)
    rate = np.exp(rng.normal(np.log(0.03), 0.8, n_customers))  # purchases per day
    lifetime = rng.exponential(300, n_customers)
    basket = np.exp(rng.normal(np.log(3000), 0.6, n_customers))
    horizon_end = (np.datetime64(max(cutoffs)) - origin).astype(int) + 120
    end = np.minimum(registered + lifetime, horizon_end)
    counts = rng.poisson(rate * np.maximum(end - registered, 0))
    customer = np.repeat(np.arange(n_customers), counts)
    day = registered[customer] + rng.random(len(customer)) * (end - registered)[customer]
    purchases = pd.DataFrame(
        {
            "customer": customer,
            "day": day,
            "spend": basket[customer] * rng.lognormal(0, 0.3, len(customer)),
        }
    ).sort_values(["customer", "day"], ignore_index=True)
    frames = []
    for cutoff in cutoffs:
        cut = float((np.datetime64(cutoff) - origin).astype(int))
        alive = registered + lifetime > cut
        frames.append(_snapshot(purchases, registered, alive * rate, cut, cutoff, rng))
    return pd.concat(frames, ignore_index=True)


def _snapshot(
    purchases: pd.DataFrame,
    registered: np.ndarray,
    live_rate: np.ndarray,
    cut: float,
    cutoff: str,
    rng: np.random.Generator,
) -> pd.DataFrame:
    n = len(registered)
    past = purchases[purchases["day"] <= cut]
    g = past.groupby("customer")

    def per(series: pd.Series, fill: float = 0.0) -> np.ndarray:
        return series.reindex(range(n), fill_value=fill).to_numpy(dtype=np.float64)

    def window(lo: float, hi: float, what: str) -> np.ndarray:
        w = purchases[(purchases["day"] > lo) & (purchases["day"] <= hi)].groupby("customer")
        return per(w.size() if what == "count" else w["spend"].sum())

    tenure = np.maximum(cut - registered, 0.0)
    frequency = per(g.size())
    monetary = per(g["spend"].sum())
    last = per(g["day"].max(), np.nan)
    recency = np.where(np.isnan(last), tenure, cut - last)
    orders_30d = window(cut - 30, cut, "count")
    gaps = per(g["day"].agg(lambda d: float(np.diff(d).mean()) if len(d) > 1 else np.nan), np.nan)
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "cutoff_date": pd.Timestamp(cutoff),
            "recency_days": recency,
            "frequency": frequency,
            "monetary": monetary,
            "tenure_days": tenure,
            "avg_basket_value": np.divide(
                monetary, frequency, out=np.zeros(n), where=frequency > 0
            ),
            "orders_30d": orders_30d,
            "orders_90d": window(cut - 90, cut, "count"),
            "spend_30d": window(cut - 30, cut, "spend"),
            "spend_90d": window(cut - 90, cut, "spend"),
            "distinct_products": np.round(frequency * rng.uniform(1.0, 3.0, n)),
            "distinct_categories": np.minimum(8, np.round(np.sqrt(frequency) * 1.5)),
            "sessions_30d": rng.poisson(0.3 + 60 * live_rate + 3 * orders_30d),
            "product_views_30d": rng.poisson(1 + 200 * live_rate + 8 * orders_30d),
            "add_to_carts_30d": rng.poisson(0.2 + 20 * live_rate + 1.5 * orders_30d),
            "return_rate": rng.beta(1, 20, n),
            "discount_share": rng.beta(2, 18, n),
            "avg_days_between_orders": np.where(np.isnan(gaps), tenure, gaps),
            "orders_next_propensity_window": window(cut, cut + 30, "count"),
            "orders_next_churn_window": window(cut, cut + 90, "count"),
            "spend_next_churn_window": window(cut, cut + 90, "spend"),
        }
    )
    assert list(frame.columns[2:-3]) == FEATURE_COLUMNS
    return frame[tenure > 0].reset_index(drop=True)
