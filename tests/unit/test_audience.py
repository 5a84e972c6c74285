"""The simulated audience clicks and buys more of what fits its latent tastes, and less further
down a list."""

from __future__ import annotations

import numpy as np
import pytest

from generator.audience import Audience
from generator.world import PRESETS, build_world


@pytest.fixture(scope="module")
def audience() -> Audience:
    return Audience(build_world(PRESETS["tiny"]))


def test_fit_follows_the_customers_latent_tastes(audience: Audience) -> None:
    world = audience.world
    products = list(range(1, world.n_products + 1))
    for customer_id in (1, 2, 3):
        fit = audience.fit(customer_id, products)
        assert ((fit > 0) & (fit < 1)).all()
        liked = int(np.argmax(world.customer_category_pref[customer_id - 1]))
        in_liked = audience.category == liked
        assert fit[in_liked].mean() > fit[~in_liked].mean()
    assert audience.fit(1, [world.n_products + 5]).tolist() == [0.0]


def test_a_better_fitting_list_earns_more_clicks_and_purchases(audience: Audience) -> None:
    rng = np.random.default_rng(7)
    products = list(range(1, audience.world.n_products + 1))
    fit = audience.fit(1, products)
    order = np.argsort(-fit)
    best = [products[i] for i in order[:10]]
    worst = [products[i] for i in order[-10:]]
    good = [audience.react(rng, 1, best) for _ in range(3_000)]
    bad = [audience.react(rng, 1, worst) for _ in range(3_000)]
    clicks = [sum(r.position is not None for r in reactions) for reactions in (good, bad)]
    assert clicks[0] > 1.5 * clicks[1]
    assert sum(r.bought for r in good) > sum(r.bought for r in bad)
    positions = [r.position for r in good if r.position is not None]
    assert positions.count(1) > positions.count(10)
    assert all(r.bought <= r.carted for r in good)


def test_shoppers_are_active_customers(audience: Audience) -> None:
    world = audience.world
    drawn = audience.shoppers(np.random.default_rng(1), 2_000)
    assert drawn.min() >= 1 and drawn.max() <= world.n_customers
    assert (world.customer_churn_day[drawn - 1] >= world.scale.days).all()
