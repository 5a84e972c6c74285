"""Purchase intent (ml/intent.py) on hand-made sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.intent import FEATURES, explain, fit, prefix_features, session_prefixes

PRICES = pd.Series({1: 10.0, 2: 30.0, 3: 50.0})


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
    assert row["minutes"] == 6 and row["hour"] == 10 and row["weekend"] == 1
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
