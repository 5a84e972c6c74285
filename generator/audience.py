"""A simulated audience that responds to what it is shown: the world's customers, with their
latent tastes, react to a recommendation list (`lakehouse simulate-traffic` drives them through
the real API). The better a list fits a customer's tastes, the more they click and buy, so a
better recommender earns measurably more: the ground truth an A/B experiment should find.

The model, per page of recommendations (a cascade: the shopper reads down the list and clicks at
most one product):

- **fit** of a product to a customer, in (0, 1): the customer's preference for its category
  (relative to an even spread), times 4 for their favourite brand in it, times how close its
  price is to their usual price level (the same tastes the generator draws sales from), then
  `score / (1 + score)`;
- **click** at position k with probability `CLICK * fit / log2(k + 1)` (position bias, as in DCG);
- after a click: **add to cart** with probability `CART * fit`, then **buy** with `BUY`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator.world import World

CLICK = 0.5
CART = 0.6
BUY = 0.5
PRICE_WIDTH = 0.4  # log-price distance at which the price fit falls to exp(-1/2)
FAVOURITE_BRAND = 4.0


@dataclass(frozen=True)
class Reaction:
    """What a shopper did with one page: the clicked position (1-based) and product, or none."""

    position: int | None = None
    product_id: int | None = None
    carted: bool = False
    bought: bool = False


class Audience:
    """The world's customers as shoppers. Product and customer ids are the ERP's (index + 1)."""

    def __init__(self, world: World) -> None:
        self.world = world
        sub = world.product_subcategory
        medians = np.ones(len(world.subcategory_names))
        for s in np.unique(sub):
            medians[s] = np.median(world.product_price[sub == s])
        self.log_relative_price = np.log(world.product_price / medians[sub])
        self.category = world.subcategory_category[sub]
        self.categories = len(world.category_names)

    def fit(self, customer_id: int, product_ids: list[int]) -> np.ndarray:
        """How well each product suits the customer, in (0, 1); unknown products fit 0."""
        w = self.world
        customer = customer_id - 1
        products = np.asarray(product_ids, dtype=np.int64) - 1
        known = (products >= 0) & (products < w.n_products)
        p = np.where(known, products, 0)
        category = self.category[p]
        preference = w.customer_category_pref[customer, category] * self.categories
        favourite = w.customer_favourite_brand[customer, category] == w.product_brand[p]
        distance = self.log_relative_price[p] - w.customer_price_pref[customer]
        price = np.exp(-(distance**2) / (2 * PRICE_WIDTH**2))
        score = preference * np.where(favourite, FAVOURITE_BRAND, 1.0) * price
        return np.where(known, score / (1 + score), 0.0)

    def react(self, rng: np.random.Generator, customer_id: int, product_ids: list[int]) -> Reaction:
        """One page: read down the list, click at most one product, maybe cart and buy it."""
        if not product_ids:
            return Reaction()
        fit = self.fit(customer_id, product_ids)
        positions = np.arange(1, len(product_ids) + 1)
        clicks = rng.random(len(product_ids)) < CLICK * fit / np.log2(positions + 1)
        if not clicks.any():
            return Reaction()
        k = int(np.argmax(clicks))
        carted = bool(rng.random() < CART * fit[k])
        bought = carted and bool(rng.random() < BUY)
        return Reaction(k + 1, int(product_ids[k]), carted, bought)

    def shoppers(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` customer ids drawn by how active each customer is (churned ones excluded)."""
        w = self.world
        weights = np.where(w.customer_churn_day >= w.scale.days, w.customer_activity, 0.0)
        return rng.choice(w.n_customers, size=n, p=weights / weights.sum()) + 1
