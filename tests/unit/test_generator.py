"""The generator is deterministic and has the statistical structure it claims."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools

import numpy as np
import orjson
import pytest

from generator.events import (
    LIVE_ORDER_OFFSET,
    event_records,
    live_messages,
    simulated_messages,
)
from generator.simulate import ADD_TO_CART, PRODUCT_VIEW, PURCHASE, Simulation
from generator.world import PRESETS, Scale, build_world, day_weight

# Two months around Black Friday (2025-11-28), big enough for stable ratios, ~1 s to simulate.
STATS_SCALE = Scale(
    customers=3000, products=500, days=61, events=400_000, start=dt.date(2025, 10, 15), seed=11
)


def _digest(scale: Scale, days: int) -> str:
    world = build_world(scale)
    h = hashlib.sha256()
    for batch in Simulation(world).days(days):
        for record in event_records(world, batch):
            h.update(orjson.dumps(record))
        for name in sorted(batch.invoices):
            h.update(np.asarray(batch.invoices[name]).astype(str).tobytes())
    return h.hexdigest()


def test_same_seed_same_world_other_seed_other_world() -> None:
    tiny = PRESETS["tiny"]
    assert _digest(tiny, 5) == _digest(tiny, 5)
    other = Scale(**{**tiny.__dict__, "seed": tiny.seed + 1})
    assert _digest(other, 5) != _digest(tiny, 5)


@pytest.fixture(scope="module")
def simulated():
    world = build_world(STATS_SCALE)
    sim = Simulation(world)
    batches = list(sim.days(STATS_SCALE.days))
    events = {
        k: np.concatenate([b.events[k] for b in batches])
        for k in ("event_time", "event_type", "customer", "product", "city", "session")
    }
    lines = {k: np.concatenate([b.lines[k] for b in batches]) for k in ("product", "quantity")}
    return world, batches, events, lines


def test_event_volume_matches_the_target(simulated) -> None:
    _, _, events, _ = simulated
    assert 0.85 * STATS_SCALE.events <= len(events["event_time"]) <= 1.25 * STATS_SCALE.events


def test_product_popularity_is_power_law(simulated) -> None:
    world, _, events, _ = simulated
    views = np.bincount(
        events["product"][events["event_type"] == PRODUCT_VIEW], minlength=world.n_products
    )
    ranked = np.sort(views)[::-1]
    top_decile_share = ranked[: world.n_products // 10].sum() / ranked.sum()
    assert top_decile_share > 0.4  # a uniform catalogue would give 0.1
    # log-log slope of rank vs views over the head is clearly negative (Zipf-like).
    head = ranked[:100]
    slope = np.polyfit(np.log(np.arange(1, 101)), np.log(head + 1), 1)[0]
    assert slope < -0.5


def test_weekly_daily_and_black_friday_seasonality(simulated) -> None:
    _, batches, events, _ = simulated
    per_day = {b.date: b.n_events for b in batches}
    black_friday = dt.date(2025, 11, 28)
    other_fridays = [d for d in per_day if d.weekday() == 4 and d != black_friday]
    assert per_day[black_friday] > 2.4 * np.median([per_day[d] for d in other_fridays])
    normal = [d for d in per_day if abs((d - black_friday).days) > 4]
    weekend = np.mean([per_day[d] for d in normal if d.weekday() >= 5])
    weekday = np.mean([per_day[d] for d in normal if d.weekday() < 5])
    assert weekend > 1.05 * weekday
    hours = ((events["event_time"] // 3_600_000) + 5) % 24  # local time, UTC+5
    by_hour = np.bincount(hours, minlength=24)
    assert by_hour[19:23].mean() > 4 * by_hour[2:6].mean()  # evenings busy, nights quiet
    assert day_weight(black_friday) == pytest.approx(
        3.0 * day_weight(black_friday - dt.timedelta(7)), rel=0.05
    )


def test_funnel_has_realistic_drop_off(simulated) -> None:
    _, _, events, _ = simulated
    counts = np.bincount(events["event_type"], minlength=6)
    view_to_cart = counts[ADD_TO_CART] / counts[PRODUCT_VIEW]
    cart_to_purchase = counts[PURCHASE] / counts[ADD_TO_CART]
    assert 0.05 < view_to_cart < 0.25
    assert 0.15 < cart_to_purchase < 0.6
    sessions = len(np.unique(events["session"]))
    converting = len(np.unique(events["session"][events["event_type"] == PURCHASE]))
    assert 0.02 < converting / sessions < 0.2


def test_regions_prefer_different_categories(simulated) -> None:
    world, _, events, _ = simulated
    viewed = (events["event_type"] == PRODUCT_VIEW) & (events["customer"] >= 0)
    region = world.city_region[events["city"][viewed]]
    cat = world.subcategory_category[world.product_subcategory[events["product"][viewed]]]
    table = np.zeros((len(world.region_names), len(world.category_names)))
    np.add.at(table, (region, cat), 1)
    share = table / table.sum(axis=1, keepdims=True)
    national = table.sum(axis=0) / table.sum()
    index = share / national  # over/under-index per region and category
    assert index.max() > 1.3 and index.min() < 0.75
    # ...and in the direction of the latent regional tilt.
    tilt = world.region_category_tilt / world.region_category_tilt.mean(axis=0)
    big = table.sum(axis=1) > 2000
    assert np.corrcoef(np.log(index[big]).ravel(), np.log(tilt[big]).ravel())[0, 1] > 0.5


def test_restockers_repeat_their_staple_on_a_cycle(simulated) -> None:
    world, batches, _, _ = simulated
    buys: dict[int, list[int]] = {}
    for b in batches:
        inv_customer = dict(
            zip(b.invoices["invoice_id"].tolist(), b.invoices["customer"].tolist(), strict=True)
        )
        for inv, product in zip(
            b.lines["invoice"].tolist(), b.lines["product"].tolist(), strict=True
        ):
            customer = inv_customer[inv]
            if world.customer_staple[customer] == product:
                buys.setdefault(customer, []).append(b.day)
    repeaters = {c: sorted(set(d)) for c, d in buys.items() if len(set(d)) >= 3}
    assert len(repeaters) > 50
    ratios = [np.median(np.diff(d)) / world.customer_restock_cycle[c] for c, d in repeaters.items()]
    assert 0.6 < np.median(ratios) < 1.6


def test_cohorts_new_customers_and_churners(simulated) -> None:
    world, _, events, _ = simulated
    known = events["customer"] >= 0
    day = (events["event_time"][known] - events["event_time"].min()) // 86_400_000
    customer = events["customer"][known]
    assert np.all(day >= world.customer_registered_day[customer])  # nobody before signing up
    assert np.all(day < world.customer_churn_day[customer])  # churners go quiet
    newcomers = np.flatnonzero(world.customer_registered_day >= 0)
    churners = np.flatnonzero(world.customer_churn_day < STATS_SCALE.days)
    assert len(newcomers) > 0.1 * world.n_customers and len(churners) > 0.05 * world.n_customers
    assert np.isin(newcomers, customer).mean() > 0.5  # most newcomers do show up


def test_the_live_stream_replays_the_world_stamped_now_with_new_ids() -> None:
    ticks = iter(range(1_800_000_000, 1_900_000_000))
    stream = live_messages(PRESETS["tiny"], clock=lambda: float(next(ticks)))
    first = [next(stream)[1] for _ in range(200)]
    assert first[0]["event_time"] == "2027-01-15T08:00:00.000000Z"
    assert [e["event_time"] for e in first] == sorted(e["event_time"] for e in first)
    assert len({e["event_id"] for e in first}) == 200
    world = [e for _, e, _ in itertools.islice(simulated_messages(PRESETS["tiny"]), 200)]
    # the same sessions, each a new visit: never the world's session ids
    assert [e["session_id"].rsplit("-", 2)[0] for e in first] == [e["session_id"] for e in world]
    assert all(e["session_id"].endswith("-1") and len(e["session_id"]) <= 64 for e in first)
    again = live_messages(PRESETS["tiny"], clock=lambda: 1_800_000_000.0)
    replayed = [next(again)[1] for _ in range(200)]
    # a restarted stream replays them as visits of its own
    assert {e["session_id"] for e in replayed}.isdisjoint(e["session_id"] for e in first)
    assert {e["event_id"] for e in replayed}.isdisjoint(e["event_id"] for e in first)


def test_each_pass_of_the_live_stream_has_order_ids_of_its_own() -> None:
    world = PRESETS["tiny"]
    events = [e for _, e, _ in simulated_messages(world)]
    orders = [e["order_id"] for e in events if e.get("order_id")]
    live = live_messages(world, clock=lambda: 1_800_000_000.0)
    passes = [next(live)[1].get("order_id") for _ in range(2 * len(events))]
    first = [o for o in passes[: len(events)] if o]
    second = [o for o in passes[len(events) :] if o]
    assert first == [o + LIVE_ORDER_OFFSET for o in orders]  # never the world's own
    assert second == [o + 2 * LIVE_ORDER_OFFSET for o in orders]
