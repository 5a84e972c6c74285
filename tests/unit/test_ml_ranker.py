"""The learned ranker: features never read past their cutoff, and repeatability is learned."""

from __future__ import annotations

import copy
import datetime as dt
import pickle
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ml.interactions import day_number
from ml.ranker import (
    BROWSE_DAYS,
    FEATURES,
    GENERATORS,
    MAX_ROUNDS,
    POPULAR_DAYS,
    ROUNDS,
    TRAINING_CUTOFFS,
    Catalogue,
    GeneratorModel,
    Generators,
    LearnedRanker,
    Shares,
    Snapshot,
    _frame,
    _history,
    _pair_statistics,
    _top,
    choose_rounds,
    feature_matrix,
    features,
    labels,
    product_prices,
    snapshot_statistics,
)
from spark_jobs.recommender_training import published_lists

START = dt.date(2025, 1, 1)
DAYS = 84
STAPLES = range(0, 10)  # bought again every week
DURABLES = range(10, 60)  # bought once, never again
NEWCOMERS = range(150, 200)  # one staple, then one durable, just before the newest day


def _world(seed: int = 0) -> tuple[pd.DataFrame, Catalogue]:
    rng = np.random.default_rng(seed)
    rows = []

    def add(customer: int, product: int, day: int, kind: str) -> None:
        rows.append((customer, product, day, kind))

    for customer in range(150):
        start = int(rng.integers(0, 14))
        for staple in rng.choice(list(STAPLES), 2, replace=False):
            phase = start + int(rng.integers(0, 7))
            for day in range(phase, DAYS, 7):
                add(customer, int(staple), day, "purchase")
        for day in range(start, DAYS, 10):
            durable = int(rng.choice(list(DURABLES)))
            add(customer, durable, day, "view")
            add(customer, durable, day + 1, "cart")
            add(customer, durable, day + 1, "purchase")
        for day in rng.integers(start, DAYS, 6):
            add(customer, int(rng.integers(0, 60)), int(day), "view")
    for customer in NEWCOMERS:
        # newcomers of every week: one staple 6 days before the week's end, one durable 1 day
        week_end = 20 + 7 * (customer % 10)
        add(customer, int(rng.choice(list(STAPLES))), week_end - 6, "purchase")
        add(customer, int(rng.choice(list(DURABLES))), week_end - 1, "purchase")
        if week_end + 1 < DAYS:
            # and they come back for the staple, never for the durable
            staple = [p for c, p, d, k in rows if c == customer and p < 10][0]
            add(customer, staple, week_end + 1, "purchase")
    frame = pd.DataFrame(rows, columns=["customer_id", "product_id", "day", "kind"])
    frame = frame[frame["day"] < DAYS]
    daily = (
        frame.assign(
            interaction_date=[START + dt.timedelta(days=int(d)) for d in frame["day"]],
            views=(frame["kind"] == "view").astype(int),
            adds_to_cart=(frame["kind"] == "cart").astype(int),
            purchases=(frame["kind"] == "purchase").astype(int),
        )
        .groupby(["customer_id", "product_id", "interaction_date"], as_index=False)[
            ["views", "adds_to_cart", "purchases"]
        ]
        .sum()
    )
    daily["weight"] = daily["views"] + 3.0 * daily["adds_to_cart"] + 5.0 * daily["purchases"]
    daily["at"] = pd.to_datetime(daily["interaction_date"]) + pd.Timedelta(hours=12)
    products = pd.DataFrame(
        {
            "product_id": np.arange(60),
            "category": ["Grocery"] * 10 + ["Electronics"] * 50,
            "brand": [f"b{i % 7}" for i in range(60)],
            "price": [300.0] * 10 + [20_000.0] * 50,
        }
    )
    cities = pd.Series(
        ["Lahore", "Karachi"] * 100, index=np.arange(200, dtype=np.int64), name="city"
    )
    return daily, Catalogue(products, cities)


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, Catalogue]:
    return _world()


@pytest.fixture(scope="module")
def ranker(world) -> LearnedRanker:
    daily, catalogue = world
    return LearnedRanker(catalogue, window_days=7).fit(daily, START + dt.timedelta(days=DAYS - 1))


def test_no_feature_reads_past_its_cutoff(world) -> None:
    daily, catalogue = world
    cutoff = START + dt.timedelta(days=55)
    before = daily[pd.to_datetime(daily["interaction_date"]) <= pd.Timestamp(cutoff)]
    # a future that would change every feature if it leaked: more of everything, everywhere
    future = daily.sample(frac=1.0, random_state=1).assign(
        interaction_date=cutoff + dt.timedelta(days=1), purchases=3, views=4, adds_to_cart=2
    )
    customers = np.arange(200)

    def computed(rows: pd.DataFrame) -> pd.DataFrame:
        snapshot = Snapshot(rows, cutoff, catalogue)
        frame = features(snapshot, Generators(rows, snapshot).propose(customers))
        return frame[["customer_id", "product_id", *FEATURES]].reset_index(drop=True)

    alone = computed(before)
    assert len(alone) > 0 and alone[FEATURES].notna().any().all()
    pd.testing.assert_frame_equal(computed(pd.concat([before, future])), alone)


def test_a_batch_has_the_statistics_of_its_customers_among_everyones(world) -> None:
    daily, catalogue = world
    snapshot = Snapshot(daily, START + dt.timedelta(days=50), catalogue)
    everyone = snapshot.of(daily["customer_id"].unique())
    customers = np.array([3, 17, 150, 999])  # 999 is unknown
    batch = snapshot.of(customers)
    expected = everyone.pairs[everyone.pairs["customer_id"].isin(customers)]
    pd.testing.assert_frame_equal(batch.pairs, expected.reset_index(drop=True))
    pd.testing.assert_frame_equal(
        batch.customers, everyone.customers.loc[customers[:3]], check_freq=False
    )
    for shares in ("category_share", "brand_share", "brand_share_in_category"):
        every, mine = getattr(everyone, shares), getattr(batch, shares)
        keys = every.unpacked()
        theirs = np.isin(keys[0], customers)
        for held, all_held in zip(mine.unpacked(), keys, strict=True):
            np.testing.assert_array_equal(held, all_held[theirs])
        np.testing.assert_array_equal(mine.values, every.values[theirs])
    taken = expected.iloc[[0, -1]]  # two pairs that exist
    asked = pd.DataFrame(
        {
            "customer_id": [*taken["customer_id"], 999, 17],
            "product_id": [*taken["product_id"], 1, 10_000],
        }
    )
    joined = asked.merge(batch.pairs, on=["customer_id", "product_id"], how="left")
    stats = batch.pair_stats(asked["customer_id"], asked["product_id"])
    pd.testing.assert_frame_equal(
        stats, joined.drop(columns=["customer_id", "product_id"]), check_dtype=False
    )
    assert stats.iloc[:2]["pair_weight"].gt(0).all()
    assert stats.iloc[2:].isna().all().all()  # unknown customer, unknown product


def _statistics_by_groups(daily: pd.DataFrame, catalogue: Catalogue, cutoff: dt.date):
    """`snapshot_statistics` the way the Spark step runs it: rows shuffled, customers in groups
    computed apart, the groups stacked in any order."""
    shuffled = daily.sample(frac=1.0, random_state=3)
    groups = shuffled.groupby(shuffled["customer_id"] % 4)
    parts = [snapshot_statistics(rows, catalogue.products, {cutoff: None}) for _, rows in groups]
    return pd.concat(parts).sample(frac=1.0, random_state=4)


def test_statistics_computed_ahead_give_the_snapshots_features(world) -> None:
    daily, catalogue = world
    cutoff = START + dt.timedelta(days=50)  # later rows must be dropped, wherever they are
    here = Snapshot(daily, cutoff, catalogue)
    statistics = _statistics_by_groups(daily, catalogue, cutoff)
    ahead = Snapshot(daily, cutoff, catalogue, statistics=statistics)
    assert ahead._history is None  # no rows kept: the batches are slices of the statistics
    customers = np.arange(205)  # 200..204 are unknown
    candidates = Generators(daily, here).propose(customers)
    want = features(here, candidates)
    got = features(ahead, candidates)
    assert want["customer_recency"].notna().any() and want["pair_weight"].notna().any()
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-12)


def test_a_ranker_serving_from_statistics_computed_ahead_lists_the_same(world, ranker) -> None:
    daily, catalogue = world
    statistics = _statistics_by_groups(daily, catalogue, ranker.as_of)
    other = copy.copy(ranker)
    other.serving = copy.copy(ranker.serving)  # the same fitted generators
    other.serving.snapshot = Snapshot(daily, ranker.as_of, catalogue, statistics=statistics)
    other.serving._proposed = {}
    customers = np.arange(200)
    want, got = ranker.recommend(customers, 10), other.recommend(customers, 10)
    np.testing.assert_array_equal(got.product_ids, want.product_ids)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-9)
    with pytest.raises(ValueError, match="lack the columns pair_weight"):
        Snapshot(daily, ranker.as_of, catalogue, statistics=statistics.drop(columns="pair_weight"))


def test_a_fit_takes_each_snapshots_statistics_from_the_source_that_holds_them(world) -> None:
    daily, catalogue = world
    as_of = START + dt.timedelta(days=DAYS - 1)
    ranker = LearnedRanker(catalogue, window_days=7)
    cutoffs = ranker.training_cutoffs(daily, as_of)
    asked: list[tuple[dt.date, np.ndarray | None]] = []

    def source(day: dt.date, customers: np.ndarray | None) -> pd.DataFrame | None:
        asked.append((day, customers))
        if day == cutoffs[0]:
            return None  # a day not computed ahead: its snapshot computes it from the rows
        statistics = _statistics_by_groups(daily, catalogue, day)
        return (
            statistics
            if customers is None
            else statistics[statistics["customer_id"].isin(customers)]
        )

    ranker.fit(daily, as_of, statistics=source)
    assert [day for day, _ in asked] == cutoffs
    # training snapshots ask for the cutoff's buyers only
    for day, customers in asked:
        buyers = labels(daily, day, 7)["customer_id"].unique()
        np.testing.assert_array_equal(customers, np.sort(buyers))
    # the serving snapshot computes every customer's statistics a scoring batch at a time
    assert ranker.serving.snapshot._history is not None
    assert ranker.training["rows"] > 0


def test_a_fit_learns_the_same_from_candidates_proposed_ahead(world) -> None:
    daily, catalogue = world
    as_of = START + dt.timedelta(days=DAYS - 1)
    ranker = LearnedRanker(catalogue, window_days=7, generator_customers=120)
    cutoffs = ranker.training_cutoffs(daily, as_of)
    # proposed ahead from every row (a step of the chain), asked for by a fit as of a day
    ahead = {day: ranker.training_candidates(daily, day) for day in cutoffs[1:]}
    asked: list[tuple[dt.date, np.ndarray]] = []

    def source(day: dt.date, buyers: np.ndarray) -> pd.DataFrame | None:
        asked.append((day, buyers))
        return ahead.get(day)  # the first day was not: the fit proposes for it itself

    seen = daily[daily["interaction_date"] <= as_of]
    fitted = LearnedRanker(catalogue, window_days=7, generator_customers=120)
    got = fitted.purchase_data(seen, as_of, candidates=source)
    want = LearnedRanker(catalogue, window_days=7, generator_customers=120).purchase_data(
        seen, as_of
    )
    assert [day for day, _ in asked] == cutoffs
    for day, buyers in asked:
        np.testing.assert_array_equal(buyers, ranker.training_buyers(daily, day))
    pd.testing.assert_frame_equal(got.matrix, want.matrix)
    np.testing.assert_array_equal(got.label, want.label)
    np.testing.assert_array_equal(got.groups, want.groups)


def test_a_cutoffs_generator_rows_do_not_depend_on_the_days_after_it(world) -> None:
    daily, catalogue = world
    cutoff = START + dt.timedelta(days=50)
    buyers = np.array([3, 17, 151, 160], dtype=np.int64)
    ranker = LearnedRanker(catalogue, window_days=7, generator_customers=60)
    for end in (cutoff, cutoff + dt.timedelta(days=20)):
        seen = daily[daily["interaction_date"] <= end]
        rows = ranker._generator_rows(seen, buyers, cutoff)
        known = rows[rows["interaction_date"] <= cutoff]
        everything = ranker._generator_rows(daily, buyers, cutoff)
        pd.testing.assert_frame_equal(known, everything[everything["interaction_date"] <= cutoff])


def test_the_chains_snapshot_days_are_the_training_cutoffs_of_each_fit() -> None:
    from spark_jobs.training import Windows, ranker_snapshot_days, test_window_days

    def expected(start: dt.date, end: dt.date) -> list[dt.date]:
        w = Windows(start, end, test_window_days(14, start, end), 0, 0)
        first = pd.DataFrame({"interaction_date": [start]})
        ranker = LearnedRanker(None, w.test_days)
        fits = [w.validation_start, w.test_start, w.data_end]
        return sorted({d for as_of in fits for d in ranker.training_cutoffs(first, as_of)})

    end = dt.date(2025, 12, 29)
    days = ranker_snapshot_days(14, dt.date(2025, 8, 1), end)
    # weekly cutoffs: the three fits' overlap in 10 days, the newest a window before the end
    assert days == expected(dt.date(2025, 8, 1), end) and len(days) == 10
    assert days[-1] == end - dt.timedelta(days=14)
    # a short history has shorter windows (a fifth of it) and the same rule
    short = ranker_snapshot_days(14, dt.date(2025, 12, 1), end)
    assert short == expected(dt.date(2025, 12, 1), end) and short[-1] == end - dt.timedelta(days=5)


def test_a_training_cutoffs_statistics_are_its_buyers_rows_of_everyones(world) -> None:
    daily, catalogue = world
    cutoff = START + dt.timedelta(days=50)
    both = snapshot_statistics(
        daily, catalogue.products, {cutoff: None, cutoff + dt.timedelta(days=1): 7}
    )
    everyone = both[both["as_of"] == cutoff].drop(columns="as_of")
    buyers = labels(daily, cutoff + dt.timedelta(days=1), 7)["customer_id"].unique()
    mine = both[both["as_of"] == cutoff + dt.timedelta(days=1)]
    assert 0 < mine["customer_id"].nunique() < everyone["customer_id"].nunique()
    assert set(mine["customer_id"]) <= set(buyers)
    alone = snapshot_statistics(
        daily[daily["customer_id"].isin(buyers)],
        catalogue.products,
        {cutoff + dt.timedelta(days=1): None},
    )
    pd.testing.assert_frame_equal(mine.reset_index(drop=True), alone)


def test_pair_statistics_are_a_groupby_of_the_rows(world) -> None:
    daily, _ = world
    c = day_number(START + dt.timedelta(days=50))
    h = _frame(_history(daily, c), c, slice(None))
    recent = h["age"] < BROWSE_DAYS
    touched = (h["purchases"] > 0) | (h["views"] > 0) | (h["adds_to_cart"] > 0)
    expected = (
        h.assign(
            purchase_days=(h["purchases"] > 0).astype(float),
            first_purchase=h["day"].where(h["purchases"] > 0),
            last_purchase=h["day"].where(h["purchases"] > 0),
            last_view=h["day"].where(h["views"] > 0),
            last_cart=h["day"].where(h["adds_to_cart"] > 0),
            first_touch=h["day"].where(touched),
            last_touch=h["day"].where(touched),
            touch_days=touched.astype(float),
            browse_score=((h["views"] + 3 * h["adds_to_cart"]) * 0.5 ** (h["age"] / 7)).where(
                recent
            ),
            views_in_browse_window=h["views"].where(recent),
            pair_weight=h["weight"] * 0.5 ** (h["age"] / 30),
        )
        .groupby(["customer_id", "product_id"])
        .agg(
            purchase_days=("purchase_days", "sum"),
            first_purchase=("first_purchase", "min"),
            last_purchase=("last_purchase", "max"),
            last_view=("last_view", "max"),
            last_cart=("last_cart", "max"),
            last_touch=("last_touch", "max"),
            first_touch=("first_touch", "min"),
            touch_days=("touch_days", "sum"),
            browse_score=("browse_score", lambda v: v.sum(min_count=1)),
            views_in_browse_window=("views_in_browse_window", lambda v: v.sum(min_count=1)),
            pair_weight=("pair_weight", "sum"),
        )
        .reset_index()
    )
    expected["purchase_days"] = expected["purchase_days"].where(expected["purchase_days"] > 0)
    # the mean days between the first and the last day the product was touched (2 or more)
    touch_days, first_touch = expected.pop("touch_days"), expected.pop("first_touch")
    expected["touch_interval"] = ((expected["last_touch"] - first_touch) / (touch_days - 1)).where(
        touch_days >= 2
    )
    got = _pair_statistics(h)
    assert got["own_interval"].notna().any() and got["last_cart"].isna().any()
    assert got["touch_interval"].notna().sum() > got["own_interval"].notna().sum()
    pd.testing.assert_frame_equal(
        got.drop(columns="own_interval"),
        expected[[c for c in got.columns if c != "own_interval"]],
        check_dtype=False,
        rtol=1e-9,
    )


def test_viewer_shares_and_the_viewed_price_level_are_sums_of_the_rows(world) -> None:
    """Each product's share of its category's viewers of the last `POPULAR_DAYS` days, and
    each customer's price tier among what they viewed (weighted by views), from the rows:
    alike whether the snapshot keeps every row or only sales (histories given)."""
    daily, catalogue = world
    priced = Catalogue(
        catalogue.products.assign(price=100.0 + 10 * np.arange(60)), catalogue.cities
    )
    cutoff = START + dt.timedelta(days=50)
    c = day_number(cutoff)
    h = _frame(_history(daily, c), c, slice(None))
    viewed = h[h["views"] > 0]
    category = priced.products.set_index("product_id")["category"]
    recent = viewed[viewed["age"] < POPULAR_DAYS].groupby("product_id")["customer_id"].nunique()
    recent = recent.reindex(category.index, fill_value=0)
    share = recent / recent.groupby(category).transform("sum")
    assert viewed["age"].max() >= POPULAR_DAYS  # older views are left out
    tier = viewed["product_id"].map(product_prices(priced.products)["price_tier"])
    level = (tier * viewed["views"]).groupby(viewed["customer_id"]).sum()
    level /= viewed["views"].groupby(viewed["customer_id"]).sum()
    customers = np.arange(0, 200, 7)
    for snapshot in (
        Snapshot(daily, cutoff, priced),
        Snapshot(daily, cutoff, priced, histories=daily),
    ):
        got = snapshot.products["category_viewer_share"]
        pd.testing.assert_series_equal(got, share, check_names=False, check_index_type=False)
        got = snapshot.of(customers).customers["viewed_price_tier_level"]
        want = level.reindex(customers)
        assert want.notna().sum() > 10 and want.nunique() > 10
        np.testing.assert_allclose(got.reindex(customers), want, rtol=1e-12)


def test_labels_are_the_purchases_of_the_window_after_the_cutoff(world) -> None:
    daily, _ = world
    cutoff = START + dt.timedelta(days=55)
    window = labels(daily, cutoff, 7)
    days = pd.to_datetime(daily["interaction_date"])
    inside = (days > pd.Timestamp(cutoff)) & (days <= pd.Timestamp(cutoff + dt.timedelta(7)))
    expected = daily[inside & (daily["purchases"] > 0)][["customer_id", "product_id"]]
    assert len(window) == len(expected.drop_duplicates()) > 0


def test_the_ranker_learns_which_bought_products_come_back(world, ranker) -> None:
    daily, _ = world
    assert len(ranker.training_cutoffs(daily, ranker.as_of)) == TRAINING_CUTOFFS
    # newcomers of the last week: one staple 6 days ago, one durable yesterday
    latest = [c for c in NEWCOMERS if 20 + 7 * (c % 10) == DAYS - 1]
    assert len(latest) >= 5
    ranked = ranker.recommend(latest, k=5)
    buy_again = GeneratorModel("buy_again", ranker).recommend(latest, k=5)
    first = ranked.product_ids[:, 0]
    assert np.isin(first, list(STAPLES)).mean() >= 0.8
    # the "latest purchase first" rule gets it wrong: the test can tell them apart
    assert np.isin(buy_again.product_ids[:, 0], list(DURABLES)).all()
    reason = ranked.reasons[0, 0]
    assert reason.startswith("bought on "), reason


def test_ranked_lists_respect_filters_and_explain_every_slot(ranker) -> None:
    customers = np.array([0, 1, 0, 999])  # a repeat and a stranger
    allowed = np.arange(5, 60)
    exclude = pd.DataFrame(
        {"customer_id": [1], "product_id": [int(ranker.recommend([1]).product_ids[0, 0])]}
    )
    recs = ranker.recommend(customers, k=10, items=allowed, exclude=exclude)
    assert recs.product_ids.shape == (4, 10)
    assert (recs.product_ids[0] == recs.product_ids[2]).all()
    chosen = recs.product_ids[recs.product_ids >= 0]
    assert np.isin(chosen, allowed).all()
    assert exclude["product_id"][0] not in recs.product_ids[1]
    # a customer never seen gets the city-less trending and popular candidates, explained
    assert (recs.product_ids[3] >= 0).sum() > 0
    assert all(isinstance(r, str) and r for r in recs.reasons[recs.product_ids >= 0])
    regular = recs.reasons[0][recs.product_ids[0] < 10]
    assert any(r.startswith("bought every ~7 days") for r in regular), regular
    assert set(ranker.importance()) == set(FEATURES)
    assert ranker.training["customers"] > 0 and len(GENERATORS) == 12


def test_a_customer_with_no_history_gets_the_trending_list_in_its_order(ranker) -> None:
    strangers = [999, 1000]  # no row at all: the forest has nothing of theirs to go on
    recs = ranker.recommend([0, *strangers], k=5)
    alone = GeneratorModel("trending_city", ranker).recommend(strangers, k=5)
    assert (recs.product_ids[1:] == alone.product_ids).all() and (alone.product_ids >= 0).all()
    assert (recs.scores[1:] == [0, -1, -2, -3, -4]).all()  # minus the place: best first
    reasons = set(recs.reasons[1:].ravel())  # each row's best generator: one of the two
    assert reasons <= {"trending", "popular in the last 28 days"} and "trending" in reasons
    # a customer with a history keeps the forest's order and scores
    frame = features(ranker.serving.snapshot, ranker.serving.propose([0]))
    assert recs.scores[0, 0] == pytest.approx(ranker.model.predict(feature_matrix(frame)).max())


def test_published_lists_say_which_are_cold_start_lists(world, ranker) -> None:
    daily, _ = world
    everything = SimpleNamespace(active=np.arange(1_000))  # a catalogue: its active products
    out = published_lists(ranker, "ranker", np.array([0, 999]), 5, everything, daily, [1, 2])
    assert set(out.loc[out["customer_id"] == 999, "source"]) == {"cold_start"}
    assert set(out.loc[out["customer_id"] == 0, "source"]) == {"model"}


def test_batches_scored_on_threads_give_the_lists_of_one_batch(world) -> None:
    daily, catalogue = world
    # a fresh fit: the serving snapshot's pandas index engines are first built while scoring
    ranker = LearnedRanker(catalogue, window_days=7).fit(daily, START + dt.timedelta(days=DAYS - 1))
    customers = np.arange(-1, 205)
    threaded = ranker.recommend(customers, k=10, batch=40, workers=3)
    whole = ranker.recommend(customers, k=10, batch=1_000, workers=1)
    assert (threaded.product_ids == whole.product_ids).all()
    assert (threaded.reasons == whole.reasons).all()


def test_the_compiled_forest_scores_as_lightgbm_and_is_never_stored(ranker) -> None:
    customers = np.arange(-1, 205)
    compiled = ranker.recommend(customers, k=10, batch=50, compiled=True)
    booster = ranker.recommend(customers, k=10, batch=50, compiled=False)
    assert (compiled.product_ids == booster.product_ids).all()
    np.testing.assert_allclose(compiled.scores, booster.scores, rtol=0, atol=1e-9)
    assert ranker._compiled is not None
    assert pickle.loads(pickle.dumps(ranker))._compiled is None


def test_category_favourites_proposes_the_best_sellers_of_the_customers_categories() -> None:
    day = START + dt.timedelta(days=20)
    rows = [  # (customer, product, views, purchases)
        *[(c, p, 0, 1) for c in range(10, 30) for p in (0, 3, 6)],  # the best sellers
        *[(c, p, 0, 1) for c in range(10, 15) for p in (1, 4)],
        (1, 5, 1, 1),  # customer 1 takes groceries of brand b only
        (1, 4, 2, 0),
    ]
    daily = pd.DataFrame(rows, columns=["customer_id", "product_id", "views", "purchases"])
    daily = daily.assign(interaction_date=day, adds_to_cart=0, at=pd.Timestamp(day))
    daily["weight"] = daily["views"] + 5.0 * daily["purchases"]
    products = pd.DataFrame(
        {
            "product_id": np.arange(10),
            "category": ["Grocery"] * 6 + ["Toys"] * 4,
            "brand": ["a", "a", "a", "b", "b", "b", "c", "c", "c", "c"],
            "price": [100.0] * 10,
        }
    )
    catalogue = Catalogue(products, pd.Series(dtype=object))
    snapshot = Snapshot(daily, day, catalogue)
    proposed = Generators(daily, snapshot).propose([1])
    mine = proposed[proposed["category_favourites_rank"].notna()]
    ranked = mine.sort_values("category_favourites_rank")["product_id"].tolist()
    # groceries only (no toys), the brand the customer takes first among equally popular ones
    assert set(ranked) <= {0, 1, 3, 4, 5} and ranked[:2] == [3, 0], ranked
    frame = features(snapshot, proposed)
    shares = frame.set_index("product_id")["brand_share_in_category"]
    assert shares[3] == pytest.approx(1.0) and shares[0] == 0.0


def test_the_number_of_trees_is_chosen_on_the_newest_training_cutoff(world, ranker) -> None:
    # the fit learns from the earlier cutoffs until NDCG@10 of the newest one's groups stops
    # improving, then trains every cutoff with that many trees; one cutoff alone: ROUNDS
    daily, _ = world
    data = ranker.purchase_data(daily, ranker.as_of)
    earlier, newest = data.split_newest()
    newest_cutoff = ranker.training_cutoffs(daily, ranker.as_of)[-1]
    buyers = ranker.training_buyers(daily, newest_cutoff)  # those with a hit among candidates
    assert 0 < len(newest.groups) == data.newest <= len(buyers)
    assert len(earlier.groups) + len(newest.groups) == len(data.groups)
    assert len(earlier.label) == earlier.groups.sum() and len(newest.label) == newest.groups.sum()
    pd.testing.assert_frame_equal(pd.concat([earlier.matrix, newest.matrix]), data.matrix)
    assert 1 <= ranker.rounds < MAX_ROUNDS
    assert ranker.model.num_trees() == ranker.rounds == ranker.training["rounds"]
    assert 0 < ranker.training["newest_cutoff_ndcg@10"] <= 1
    assert choose_rounds([newest], debias=False) == (ROUNDS, None)  # `newest` is unset


def test_cutoffs_whose_long_window_ends_by_the_fit_also_learn_its_purchases(world) -> None:
    # a second group per buyer of the cutoffs whose 14 days after them end by the fit's day,
    # the same candidates labelled by those 14 days, first; the 7-day groups as they were
    daily, catalogue = world
    as_of = START + dt.timedelta(days=70)
    seen = daily[pd.to_datetime(daily["interaction_date"]) <= pd.Timestamp(as_of)]
    short = LearnedRanker(catalogue, window_days=7, long_window_days=7).purchase_data(seen, as_of)
    ranker = LearnedRanker(catalogue, window_days=7, long_window_days=14)
    both = ranker.purchase_data(seen, as_of)
    head = int(both.groups[: both.long_groups].sum())
    assert short.long_groups == 0 and both.long_groups > 0 and both.newest == short.newest
    pd.testing.assert_frame_equal(both.matrix.iloc[head:].reset_index(drop=True), short.matrix)
    np.testing.assert_array_equal(both.label[head:], short.label)
    long = [c for c in ranker.training_cutoffs(seen, as_of) if c + dt.timedelta(days=14) <= as_of]
    hits = [
        ranker.training_candidates(seen, c)[["customer_id", "product_id"]]
        .merge(labels(seen, c, 14))
        .assign(cutoff=c)
        for c in long
    ]
    hits = pd.concat(hits)
    assert 0 < len(long) < TRAINING_CUTOFFS
    assert both.label[:head].sum() == len(hits)
    assert both.long_groups == len(hits[["cutoff", "customer_id"]].drop_duplicates())
    # every label from days up to the fit's: the rows after it change nothing
    later = LearnedRanker(catalogue, window_days=7, long_window_days=14).purchase_data(daily, as_of)
    pd.testing.assert_frame_equal(later.matrix, both.matrix)
    np.testing.assert_array_equal(later.label, both.label)


def test_a_reseeded_ranker_refits_only_its_forest_and_seed_zero_is_the_fit_itself(
    world, ranker
) -> None:
    daily, _ = world
    customers = np.sort(daily["customer_id"].unique())[:30]
    same, other = ranker.reseeded(0), ranker.reseeded(1)
    assert same.rounds == ranker.rounds and other.training["seed"] == 1.0
    assert same.model.model_to_string() == ranker.model.model_to_string()
    assert other.model.model_to_string() != ranker.model.model_to_string()
    assert other.serving is ranker.serving and "seed" not in ranker.training
    want, got = ranker.recommend(customers).as_dict(), same.recommend(customers).as_dict()
    assert want.keys() == got.keys() and all(np.array_equal(want[c], got[c]) for c in want)
    with pytest.raises(ValueError, match="purchase groups only"):
        LearnedRanker(ranker.catalogue, window_days=7).reseeded(1)


def test_the_ranker_learns_from_a_fixed_sample_of_each_windows_buyers(world) -> None:
    daily, catalogue = world
    as_of = START + dt.timedelta(days=DAYS - 1)
    every = LearnedRanker(catalogue, window_days=7, training_customers=0).purchase_data(
        daily, as_of
    )
    first, again = (
        LearnedRanker(catalogue, window_days=7, training_customers=40).purchase_data(daily, as_of)
        for _ in range(2)
    )
    assert len(first.groups) <= 40 * TRAINING_CUTOFFS < len(every.groups)
    pd.testing.assert_frame_equal(first.matrix, again.matrix)
    with pytest.raises(ValueError, match="training_customers must be >= 0"):
        LearnedRanker(catalogue, window_days=7, training_customers=-1)


def test_training_generators_see_their_buyers_and_a_fixed_sample_of_the_others(world) -> None:
    daily, catalogue = world
    cutoff = START + dt.timedelta(days=50)
    buyers = np.array([3, 17, 151, 160], dtype=np.int64)
    ranker = LearnedRanker(catalogue, window_days=7, generator_customers=60)
    rows = ranker._generator_rows(daily, buyers, cutoff)
    kept = rows["customer_id"].unique()
    assert len(kept) == 60 and set(buyers) <= set(kept)
    # every row of a kept customer, none of the others
    pd.testing.assert_frame_equal(rows, daily[daily["customer_id"].isin(kept)])
    assert rows.equals(ranker._generator_rows(daily, buyers, cutoff))  # seeded by the cutoff
    later = ranker._generator_rows(daily, buyers, cutoff + dt.timedelta(days=7))
    assert set(later["customer_id"]) != set(kept)
    for every in (0, daily["customer_id"].nunique()):
        everyone = LearnedRanker(catalogue, window_days=7, generator_customers=every)
        assert everyone._generator_rows(daily, buyers, cutoff) is daily
    sampled = ranker.purchase_data(daily, START + dt.timedelta(days=DAYS - 1))
    assert len(sampled.groups) and sampled.label.sum() > 0
    with pytest.raises(ValueError, match="generator_customers must be >= 0"):
        LearnedRanker(catalogue, window_days=7, generator_customers=-1)


def test_a_snapshot_of_sampled_histories_keeps_their_features_and_everyones_products(
    world,
) -> None:
    daily, catalogue = world
    cutoff = START + dt.timedelta(days=50)
    buyers = np.array([3, 17, 151, 160], dtype=np.int64)
    histories = LearnedRanker(catalogue, window_days=7, generator_customers=60)._generator_rows(
        daily, buyers, cutoff
    )
    full = Snapshot(daily, cutoff, catalogue)
    sampled = Snapshot(daily, cutoff, catalogue, histories)
    assert histories["customer_id"].nunique() < daily["customer_id"].nunique()
    customers, products = np.repeat(buyers, 60), np.tile(np.arange(60), len(buyers))
    pd.testing.assert_frame_equal(
        sampled.of(buyers).pair_stats(customers, products),
        full.of(buyers).pair_stats(customers, products),
    )
    pd.testing.assert_frame_equal(sampled.of(buyers).customers, full.of(buyers).customers)
    everyones = ["product_buyers_7d", "product_buyers_28d", "category_popularity_share"]
    everyones += ["category_viewer_share", "product_trend", "typical_interval"]
    pd.testing.assert_frame_equal(sampled.products[everyones], full.products[everyones])


@pytest.mark.parametrize("big_ids", [False, True])
def test_shares_are_pandas_group_sums_found_by_key(big_ids: bool) -> None:
    """Shares sum as pandas' groupby does and are found as its MultiIndex lookup finds them
    (codes from -1; unknown customers, codes outside the spans and absent keys 0), whatever
    the customer ids."""
    rng = np.random.default_rng(2)
    spread = [0, 10**18] if big_ids else [0]
    customer = rng.integers(0, 50, 400) + rng.choice(spread, 400)
    category, brand = rng.integers(-1, 6, 400), rng.integers(-1, 9, 400)
    share = rng.random(400)
    frame = pd.DataFrame({"customer_id": customer, "c": category, "b": brand, "share": share})
    expected = frame.groupby(["customer_id", "c", "b"])["share"].sum()
    ids, place = np.unique(customer, return_inverse=True)
    every = np.ones(400, dtype=bool)
    shares = Shares.summed(ids, place, share, every, [7, 10], category, brand)
    held = shares.unpacked()
    for level, values in enumerate(held):
        np.testing.assert_array_equal(values, expected.index.get_level_values(level))
    np.testing.assert_allclose(shares.values, expected.to_numpy(), rtol=1e-12)
    asked = [rng.integers(0, 60, 300) + rng.choice(spread, 300), rng.integers(-1, 8, 300)]
    asked.append(rng.integers(-1, 11, 300))
    found = expected.reindex(pd.MultiIndex.from_arrays(asked)).fillna(0).to_numpy()
    assert (found > 0).sum() > 10  # some asked rows are held
    np.testing.assert_allclose(shares.lookup(*asked), found, rtol=1e-12)
    nothing = Shares.summed(ids, place, share, ~every, [7, 10], category, brand)
    np.testing.assert_array_equal(nothing.lookup(*asked), np.zeros(300))


def test_generators_stored_before_the_codes_propose_as_new_ones(world) -> None:
    """Artefacts pickled before the snapshot coded categories and brands (and with best
    sellers keyed on names) are loaded with the codes and propose the same candidates."""
    daily, catalogue = world
    snapshot = Snapshot(daily, START + dt.timedelta(days=50), catalogue)
    generators = Generators(daily, snapshot)
    customers = np.arange(120)
    expected = generators.propose(customers)
    old = pickle.loads(pickle.dumps(generators))
    old.snapshot.products = old.snapshot.products.drop(columns=["category_code", "brand_code"])
    state = {**old.__getstate__(), "_best_sellers": pd.DataFrame({"category": ["by name"]})}
    loaded = Generators.__new__(Generators)
    loaded.__setstate__(pickle.loads(pickle.dumps(state)))  # as unpickling an old artefact
    assert "_best_sellers" not in vars(loaded)
    assert {"category_code", "brand_code"} <= set(loaded.snapshot.products.columns)
    pd.testing.assert_frame_equal(loaded.propose(customers), expected)


@pytest.mark.parametrize("grouped", [True, False])
def test_a_generator_s_top_n_is_each_customer_s_best_scores_first_in_frame_order_among_equals(
    grouped: bool,
) -> None:
    # grouped frames sort only the rows at or above each customer's n-th score: the same
    # rows, ranks and order as a stable sort of every row (ties are common: rounded scores;
    # NaN scores come last)
    rng = np.random.default_rng(4)
    customer = np.sort(rng.integers(0, 300, 5_000)) if grouped else rng.integers(0, 300, 5_000)
    frame = pd.DataFrame(
        {
            "customer_id": customer,
            "product_id": rng.integers(0, 10_000, len(customer)),
            "score": np.round(rng.random(len(customer)), 1),
        }
    )
    with_nan = frame.assign(score=frame["score"].where(frame.index % 9 > 0))
    for scores in (frame, with_nan):
        want = scores.assign(position=np.arange(len(scores))).sort_values(
            ["customer_id", "score", "position"], ascending=[True, False, True], na_position="last"
        )
        want = want.assign(rank=want.groupby("customer_id").cumcount() + 1)
        want = want[want["rank"] <= 7]
        top = _top(scores, 7, "browsed")
        assert top.index.tolist() == want.index.tolist()
        assert top["rank"].tolist() == want["rank"].tolist()
        assert (top["generator"] == "browsed").all()
