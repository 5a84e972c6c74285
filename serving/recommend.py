"""Recommendations for one request: the customer's batch list re-ranked with the live session.

Pure functions over a loaded snapshot and the activity read from the online store, so they are
tested directly. The blend:

- the batch list (the champion's, nightly) gives each of its products a score falling with its
  rank, blended with the session's scores by the session's share (ml/blend.py: tuned on
  held-out sessions and published with the session model, else 0.6);
- the session adds what the session recommender (ml/session.py, the champion of the next-item
  evaluation) predicts from the session's products, or without one the neighbours of what was
  viewed (newer views weigh more); the cart adds its products' neighbours (twice a view) and
  what is bought together with them; the product on screen (`context_product_id`) adds its
  neighbours and what is bought with it;
- products in the cart or bought in the session are left out; anything missing is filled from
  the rest of the batch list, then what is trending in the customer's city, then nationally.

Every item carries the reason of its largest contribution. The weights inside the session part
(recency, cart, context) are fixed defaults (see docs/serving.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from ml.blend import SESSION_CANDIDATES, Scored, blend
from serving.snapshot import Snapshot

RECENCY_DECAY = 0.8  # weight of the n-th most recent product: decay ** n
CART_WEIGHT = 2.0
CONTEXT_WEIGHT = 1.5
NEIGHBOURS = 10  # per session product
METHODS = ("cf_cosine", "content")  # behaviour first; content for products without behaviour
METHOD_WEIGHT = {"cf_cosine": 1.0, "content": 0.5}


@dataclass
class Activity:
    """Live activity, newest first: product ids viewed, carted and bought."""

    views: list[int] = field(default_factory=list)
    cart: list[int] = field(default_factory=list)
    bought: list[int] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.views or self.cart or self.bought)


def _name(snapshot: Snapshot, product_id: int) -> str:
    product = snapshot.products.get(product_id)
    return product.name if product else f"product {product_id}"


def neighbours(snapshot: Snapshot, product_id: int, n: int = NEIGHBOURS) -> list[tuple[int, float]]:
    """Similar products, behaviour-based first, then content-based, best first."""
    found: dict[int, float] = {}
    for method in METHODS:
        grouped = snapshot.similar.get(method)
        if grouped is None:
            continue
        rows = grouped.rows(product_id)
        ids = grouped.values["similar_product_id"][rows][:n]
        sims = grouped.values["similarity"][rows][:n]
        for other, sim in zip(ids.tolist(), sims.tolist(), strict=True):
            found.setdefault(other, sim * METHOD_WEIGHT[method])
        if len(found) >= n:
            break
    return sorted(found.items(), key=lambda kv: -kv[1])[:n]


def bought_together(
    snapshot: Snapshot, product_id: int, n: int = NEIGHBOURS
) -> list[tuple[int, float]]:
    rows = snapshot.together.rows(product_id)
    ids = snapshot.together.values["other_product_id"][rows][:n]
    confidence = snapshot.together.values["confidence"][rows][:n]
    return list(zip(ids.tolist(), confidence.tolist(), strict=True))


def _session_scores(
    snapshot: Snapshot, session: Activity, context_product_id: int | None
) -> dict[int, Scored]:
    scores: dict[int, Scored] = {}

    def spread(source: Iterable[tuple[int, float]], weight: float, reason: str) -> None:
        for product, value in source:
            scores.setdefault(product, Scored()).add(weight * value, reason)

    if snapshot.session_model is not None:
        # the evaluated next-item model, from the session's products oldest first
        prefix = list(dict.fromkeys(reversed(session.views + session.cart)))
        if prefix:
            found = snapshot.session_model.recommend(prefix, SESSION_CANDIDATES)
            top = max((score for _, score in found), default=1.0) or 1.0
            reason = f"often viewed with {_name(snapshot, prefix[-1])}"
            spread(((p, score / top) for p, score in found), 1.0, reason)
    else:
        for n, product in enumerate(session.views):
            weight = RECENCY_DECAY**n
            name = _name(snapshot, product)
            spread(neighbours(snapshot, product), weight, f"similar to {name}")
    for n, product in enumerate(session.cart):
        weight = CART_WEIGHT * RECENCY_DECAY**n
        name = _name(snapshot, product)
        spread(neighbours(snapshot, product), weight, f"similar to {name} in your cart")
        spread(bought_together(snapshot, product), weight, f"often bought with {name}")
    if context_product_id is not None:
        name = _name(snapshot, context_product_id)
        spread(neighbours(snapshot, context_product_id), CONTEXT_WEIGHT, f"similar to {name}")
        spread(
            bought_together(snapshot, context_product_id),
            CONTEXT_WEIGHT,
            f"often bought with {name}",
        )
    return scores


def recommend(
    snapshot: Snapshot,
    customer_id: int | None,
    session: Activity,
    k: int,
    context_product_id: int | None = None,
    city: str | None = None,
    session_share: float | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """The top k items (product, score, reason) and the strategy that produced them:
    `personal+session`, `personal`, `session` or `popular`. `session_share` overrides the
    snapshot's (an experiment's variant)."""
    excluded = set(session.cart) | set(session.bought)
    if context_product_id is not None:
        excluded.add(context_product_id)
    batch: list[tuple[int, str]] = []
    if customer_id is not None:
        rows = snapshot.lists.rows(customer_id)
        products = snapshot.lists.values["product_id"][rows].tolist()
        reasons = snapshot.lists.values["reason"][rows].tolist()
        batch = [(p, str(r)) for p, r in zip(products, reasons, strict=True)]

    session_scores = _session_scores(snapshot, session, context_product_id)
    share = snapshot.session_share if session_share is None else session_share
    combined = blend(batch, session_scores, share)

    ranked = sorted(
        (
            (p, s)
            for p, s in combined.items()
            if p not in excluded and p in snapshot.products and s.score > 0
        ),
        key=lambda item: (-item[1].score, item[0]),
    )
    items = [{"product_id": p, "score": round(s.score, 4), "reason": s.reason} for p, s in ranked]
    strategy = "+".join(
        name for name, used in (("personal", batch), ("session", session_scores)) if used
    )
    # slots left: the rest of the batch list (scored 0 when the session takes the whole
    # share), then what is trending
    filled = fill(snapshot, items, chain(batch, trending(snapshot, city)), k, excluded)
    return filled, strategy or "popular"


def trending(snapshot: Snapshot, city: str | None) -> Iterator[tuple[int, str]]:
    """What is trending in the city, then nationally, with the reason (read only as far as a
    list needs it)."""
    where = f"in {city}" if city else "nationally"
    for product in snapshot.popular(city):
        yield product, f"trending {where}"


def fill(
    snapshot: Snapshot,
    items: list[dict[str, Any]],
    candidates: Iterable[tuple[int, str]],
    k: int,
    excluded: set[int],
) -> list[dict[str, Any]]:
    """`items` topped up to k from `candidates` (product, reason), sellable ones only, each
    product once and none of `excluded`."""
    items = list(items[:k])
    if len(items) >= k:
        return items
    have = {i["product_id"] for i in items} | excluded
    for product, reason in candidates:
        if len(items) >= k:
            break
        if product not in have and product in snapshot.products:
            items.append({"product_id": product, "score": 0.0, "reason": reason})
            have.add(product)
    return items


def popular_products(
    snapshot: Snapshot, session: Activity, k: int, city: str | None = None
) -> tuple[list[dict[str, Any]], str]:
    """Only what is trending (an experiment's baseline variant), the cart and what the session
    bought left out."""
    excluded = set(session.cart) | set(session.bought)
    return fill(snapshot, [], trending(snapshot, city), k, excluded), "popular"


def similar_products(snapshot: Snapshot, product_id: int, k: int) -> list[dict[str, Any]]:
    reason = f"similar to {_name(snapshot, product_id)}"
    return [
        {"product_id": p, "score": round(s, 4), "reason": reason}
        for p, s in neighbours(snapshot, product_id, n=k)
        if p in snapshot.products
    ]


def products_bought_together(snapshot: Snapshot, product_id: int, k: int) -> list[dict[str, Any]]:
    name = _name(snapshot, product_id)
    return [
        {"product_id": p, "score": round(c, 4), "reason": f"often bought with {name}"}
        for p, c in bought_together(snapshot, product_id, n=k)
        if p in snapshot.products
    ]
