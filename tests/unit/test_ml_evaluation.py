"""Offline evaluation: the time split and every metric against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ml.evaluation import (
    average_precision_at_k,
    catalogue_coverage,
    category_slug,
    evaluate,
    evaluate_recommendations,
    ndcg_at_k,
    novelty,
    precision_at_k,
    recall_at_k,
    relevant_items,
    time_split,
    top_category_agreement,
)
from ml.interactions import Interactions
from ml.recommenders.base import Recommendations


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 2, 3],
            "product_id": [10, 11, 10, 12, 13],
            "at": pd.to_datetime(
                [
                    "2025-01-01 00:00",
                    "2025-01-09 23:59",
                    "2025-01-10 00:00",  # exactly the cutoff: test
                    "2025-01-16 23:59",
                    "2025-01-17 00:00",  # past a 7-day test window
                ]
            ),
            "weight": [1.0, 1.0, 1.0, 1.0, 1.0],
        }
    )


def test_time_split_trains_before_the_cutoff_and_tests_the_window_after() -> None:
    train, test = time_split(_events(), "2025-01-10", test_days=7)
    assert train["product_id"].tolist() == [10, 11]
    assert test["product_id"].tolist() == [10, 12]
    _, everything_after = time_split(_events(), "2025-01-10")
    assert everything_after["product_id"].tolist() == [10, 12, 13]
    arrays = {c: _events()[c].to_numpy() for c in _events().columns}
    train_a, test_a = time_split(arrays, "2025-01-10", test_days=7)
    assert isinstance(train_a, dict) and train_a["product_id"].tolist() == [10, 11]
    assert test_a["customer_id"].tolist() == [2, 2]


def test_ranking_metrics_match_hand_computed_values() -> None:
    recs, rel = [1, 2, 3, 4, 5], [2, 5, 9]
    assert precision_at_k(recs, rel, 5) == pytest.approx(2 / 5)
    assert recall_at_k(recs, rel, 5) == pytest.approx(2 / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(recs, rel, 5) == pytest.approx(dcg / idcg)
    assert average_precision_at_k(recs, rel, 5) == pytest.approx((1 / 2 + 2 / 5) / 3)
    # only the first k count; a perfect list scores 1
    assert precision_at_k(recs, rel, 1) == 0.0
    assert ndcg_at_k([9, 2, 5], rel, 3) == pytest.approx(1.0)
    assert average_precision_at_k([9, 2, 5], rel, 3) == pytest.approx(1.0)
    assert ndcg_at_k([], rel, 5) == 0.0


def test_coverage_and_novelty() -> None:
    recs = {1: [1, 2], 2: [3, 4]}
    assert catalogue_coverage(recs, 8, k=2) == pytest.approx(4 / 8)
    assert catalogue_coverage(recs, 8, k=1) == pytest.approx(2 / 8)
    counts = {1: 8, 2: 2, 3: 1}  # item 4 unseen in training: counted as one customer
    # -log2(8/8), -log2(2/8), -log2(1/8), -log2(1/8)
    assert novelty(recs, counts, n_users=8, k=2) == pytest.approx((0 + 2 + 3 + 3) / 4)


def test_evaluate_recommendations_counts_silent_customers_as_zero() -> None:
    recs = {1: [10, 11], 2: [20, 21]}
    relevant = {1: [11], 2: [99], 3: [10]}  # customer 3 got no list
    m = evaluate_recommendations(
        recs, relevant, k=2, catalogue_size=10, item_user_counts={}, n_users=4
    )
    assert m["users_evaluated"] == 3 and m["k"] == 2
    assert m["hit_rate@2"] == pytest.approx(1 / 3)
    assert m["precision@2"] == pytest.approx((1 / 2) / 3)
    assert m["recall@2"] == pytest.approx(1 / 3)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / 3)
    assert m["coverage@2"] == pytest.approx(4 / 10)


def test_relevant_items_drop_what_was_seen_in_training() -> None:
    train = Interactions.from_arrays([1, 2], [10, 10])
    relevant = relevant_items([1, 1, 2, 3], [10, 11, 10, 12], train)
    assert {c: r.tolist() for c, r in relevant.items()} == {1: [11], 3: [12]}
    everything = relevant_items([1, 1, 2], [10, 11, 10], train, exclude_seen=False)
    assert {c: r.tolist() for c, r in everything.items()} == {1: [10, 11], 2: [10]}


class _Fixed:
    name = "fixed"

    def __init__(self, lists: dict[int, list[int]]) -> None:
        self.lists = lists

    def recommend(self, customer_ids, k: int = 10, exclude_seen: bool = True) -> Recommendations:
        ids = np.array([(self.lists[int(c)] + [-1] * k)[:k] for c in customer_ids])
        return Recommendations(np.asarray(customer_ids), ids, np.where(ids >= 0, 1.0, np.nan))


def test_evaluate_returns_a_flat_dict_over_warm_customers() -> None:
    train = Interactions.from_arrays([1, 1, 2, 3], [10, 11, 10, 12])
    model = _Fixed({1: [12, 13], 2: [11, 12]})
    m = evaluate(model, train, [1, 2, 9], [12, 13, 10], k=2)  # customer 9 is cold
    assert m["model"] == "fixed" and m["users_evaluated"] == 2
    assert m["hit_rate@2"] == pytest.approx(1 / 2)
    assert m["precision@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert all(isinstance(v, int | float | str) for v in m.values())


def test_top_category_agreement_uses_the_generator_pref_columns() -> None:
    assert category_slug("Home & Kitchen") == "home_kitchen"
    assert category_slug("Books & Stationery") == "books_stationery"
    tastes = pd.DataFrame(
        {
            "customer_id": [1, 2],
            "top_category": ["Grocery", "Home & Kitchen"],
            "pref_grocery": [0.7, 0.1],
            "pref_home_kitchen": [0.3, 0.9],
            "brand_grocery": ["Acme", None],  # not a preference column
        }
    )
    category = {1: "Grocery", 2: "Grocery", 3: "Home & Kitchen", 4: "Home & Kitchen"}
    recs = {1: [1, 2, 3, 4], 2: [3, 1], 7: [1]}  # 7 has no ground truth
    agreement = top_category_agreement(recs, category, tastes)
    assert agreement["customers"] == 2
    assert agreement["top_category_share"] == pytest.approx((2 + 1) / (4 + 2))
    assert agreement["chance_share"] == pytest.approx(0.5)
    assert top_category_agreement(recs, category, tastes, k=1)["top_category_share"] == 1.0
