"""Purchase intent (ml/intent.py) on hand-made sessions."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from ml.intent import (
    FEATURES,
    NEVER,
    explain,
    fit,
    live_features,
    predict_intent,
    prefix_features,
    session_prefixes,
)

PRICES = pd.Series({1: 10.0, 2: 30.0, 3: 50.0})
CATEGORIES = pd.Series({1: "Phones", 2: "Audio", 3: "Audio"})
ORDER_DAYS = ["2025-10-01", "2025-11-30", "2025-12-06"]  # the last one: the session's day


def events(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["session_id", "minute", "event_type", "product_id", "customer_id"]
    )
    start = pd.Timestamp("2025-12-06 10:00", tz="UTC")  # a Saturday
    frame["event_time"] = start + pd.to_timedelta(frame.pop("minute"), unit="min")
    return frame


def test_features_follow_what_the_online_store_holds() -> None:
    frame = events(
        [
            ("s", 0, "product_view", 1, 7),
            ("s", 2, "product_view", 2, 7),
            ("s", 3, "product_view", 2, 7),
            ("s", 4, "add_to_cart", 2, 7),
            ("s", 5, "add_to_cart", 3, 7),
            ("s", 6, "remove_from_cart", 3, 7),
        ]
    )
    row = prefix_features(frame, PRICES).loc["s"]
    assert row["viewed"] == 2 and row["carted"] == 1  # 3 was removed again
    assert row["view_price"] == 20.0 and row["cart_value"] == 30.0 and row["cart_price"] == 30.0
    # to the newest view or add to cart (the removal at minute 6 leaves no time in the store)
    assert row["minutes"] == 5 and row["hour"] == 10 and row["weekend"] == 1
    assert row["known_customer"] == 1


def test_a_prefix_never_holds_the_purchase_or_what_came_after() -> None:
    frame = events(
        [
            ("buyer", 0, "product_view", 1, None),
            ("buyer", 1, "add_to_cart", 1, None),
            ("buyer", 2, "purchase", 1, None),
            ("buyer", 3, "product_view", 3, None),
            ("browser", 0, "product_view", 2, None),
            ("browser", 1, "product_view", 3, None),
            ("instant", 0, "purchase", 2, None),  # nothing before the purchase: no prefix
        ]
    )
    for seed in range(20):
        sessions = session_prefixes(frame, PRICES, seed=seed)
        assert list(sessions.index) == ["browser", "buyer"]
        assert sessions.loc["buyer", "label"] == 1 and sessions.loc["browser", "label"] == 0
        assert sessions.loc["buyer", "viewed"] == 1 and sessions.loc["buyer", "view_price"] == 10.0
        assert sessions.loc["buyer", "minutes"] <= 1  # the purchase (minute 2) is never seen


def test_the_model_learns_carts_and_its_shap_values_add_up() -> None:
    rng = np.random.default_rng(0)
    n = 4_000
    carted = rng.integers(0, 3, n)
    features = pd.DataFrame({name: rng.random(n) for name in FEATURES})
    features["carted"] = carted.astype(float)
    features["label"] = (rng.random(n) < 0.05 + 0.3 * carted).astype(int)
    model = fit(features.iloc[:3_000], features.iloc[3_000:])
    shap = explain(model, features.iloc[3_000:])
    raw = model.predict(features.iloc[3_000:][list(FEATURES)], raw_score=True)
    np.testing.assert_allclose(shap.sum(axis=1), raw, rtol=1e-6, atol=1e-6)
    assert shap.drop(columns="bias").abs().mean().idxmax() == "carted"


def test_a_live_session_gets_the_features_its_events_would_give_offline() -> None:
    """The API's features (from the online store's product times) equal the training ones for
    the same events."""
    frame = events(
        [
            ("s", 0, "product_view", 1, None),
            ("s", 3, "product_view", 2, None),
            ("s", 4, "product_view", 1, None),
            ("s", 9, "add_to_cart", 3, None),
            ("s", 12, "product_view", 9, None),  # no price known
        ]
    )
    offline = prefix_features(frame, PRICES).loc["s"].to_dict()
    ms = {m: (frame["event_time"].iloc[0].timestamp() + 60 * m) * 1000 for m in (0, 3, 4, 9, 12)}
    # what the store keeps: each product once with its newest time, and the first event's time
    views = [(2, ms[3]), (1, ms[4]), (9, ms[12])]
    live = live_features(views, [(3, ms[9])], ms[0], PRICES.to_dict(), known_customer=False)
    assert live == offline

    # signed in on a phone: the device, the categories and the orders the snapshot holds
    signed_in = frame.assign(customer_id=7, device="mobile_app_ios")
    orders = pd.DataFrame(
        {"customer_id": [7, 7, 7, 8], "order_date": pd.to_datetime(ORDER_DAYS + ["2025-12-01"])}
    )
    offline = (
        prefix_features(signed_in, PRICES, categories=CATEGORIES, orders=orders).loc["s"].to_dict()
    )
    live = live_features(
        views,
        [(3, ms[9])],
        ms[0],
        PRICES.to_dict(),
        known_customer=True,
        categories=CATEGORIES.to_dict(),
        device="mobile_app_ios",
        past_orders=2,  # the snapshot counts the orders before the session's day
        last_order=dt.date(2025, 11, 30),
    )
    assert live == offline
    assert offline["app"] == 1 and offline["mobile_web"] == 0
    assert offline["categories"] == 2 and offline["category_focus"] == 0.5  # 1, 2 | 3 (9: none)
    assert offline["past_orders"] == 2 and offline["days_since_order"] == 6


def test_order_history_counts_only_the_days_before_the_session() -> None:
    frame = events(
        [
            ("regular", 0, "product_view", 1, 7),
            ("new", 0, "product_view", 1, 8),
            ("anonymous", 0, "product_view", 1, None),
        ]
    )
    orders = pd.DataFrame(
        {
            "customer_id": [7, 7, 7, 8],
            # the session is on 2025-12-06: that day's order is not history yet
            "order_date": pd.to_datetime(["2025-11-01", "2025-12-05", "2025-12-06", "2025-12-07"]),
        }
    )
    rows = prefix_features(frame, PRICES, orders=orders)
    assert rows.loc["regular", "past_orders"] == 2 and rows.loc["regular", "days_since_order"] == 1
    for session in ("new", "anonymous"):
        assert rows.loc[session, "past_orders"] == 0
        assert rows.loc[session, "days_since_order"] == NEVER


def test_a_prediction_is_explained_feature_by_feature() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({name: rng.random(2_000) for name in FEATURES})
    frame["label"] = (frame["carted"] > 0.7).astype(int)
    model = fit(frame.iloc[:1_500], frame.iloc[1_500:])
    row = frame.iloc[0][list(FEATURES)].to_dict()
    probability, shap = predict_intent(model, row, explain=True)
    assert 0 < probability < 1 and set(shap) == {*FEATURES, "bias"}
    assert np.isclose(sum(shap.values()), np.log(probability / (1 - probability)))
    assert predict_intent(model, row)[1] is None


def test_a_product_added_again_after_its_removal_is_in_the_cart() -> None:
    frame = events(
        [
            ("s", 0, "add_to_cart", 1, None),
            ("s", 1, "remove_from_cart", 1, None),
            ("s", 2, "add_to_cart", 1, None),
            ("s", 3, "add_to_cart", 2, None),
            ("s", 4, "remove_from_cart", 2, None),
        ]
    )
    row = prefix_features(frame, PRICES).loc["s"]
    assert row["carted"] == 1 and row["cart_value"] == 10.0
