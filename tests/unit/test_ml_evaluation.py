"""Offline evaluation: the time split and every metric against hand-computed values."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ml.evaluation import (
    Window,
    average_precision_at_k,
    catalogue_coverage,
    evaluate_recommendations,
    ndcg_at_k,
    novelty,
    precision_at_k,
    recall_at_k,
    time_split,
)
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


def test_evaluate_recommendations_is_the_mean_of_the_per_customer_metrics() -> None:
    # lists shorter than k, padded, with repeats, empty; relevant sets with repeats
    rng = np.random.default_rng(5)
    recs = {u: rng.choice(np.r_[-1, np.arange(12)], rng.integers(0, 7)) for u in range(60)}
    relevant = {u: rng.integers(0, 12, rng.integers(1, 6)).tolist() for u in range(10, 80)}
    m = evaluate_recommendations(
        recs, relevant, k=5, catalogue_size=12, item_user_counts={}, n_users=80
    )
    for name, metric in (
        ("precision@5", precision_at_k),
        ("recall@5", recall_at_k),
        ("ndcg@5", ndcg_at_k),
        ("map@5", average_precision_at_k),
    ):
        each = [metric(recs.get(u, []), items, 5) for u, items in relevant.items()]
        assert m[name] == pytest.approx(np.mean(each)), name


def _window() -> Window:
    return Window(
        purchases=pd.DataFrame(
            {"customer_id": [1, 1, 2, 3, 9], "product_id": [10, 11, 10, 12, 13]}
        ),
        bought_before=pd.DataFrame({"customer_id": [1, 2], "product_id": [10, 11]}),
        fallback=np.array([12, 10, 11, 13]),
        item_user_counts=pd.Series({10: 2, 11: 1}),
        n_users=2,
        catalogue_size=10,
    )


def test_all_counts_repeat_purchases_and_new_only_products_not_bought_before() -> None:
    window = _window()
    everything = {c: r.tolist() for c, r in window.relevant("all").items()}
    assert everything == {1: [10, 11], 2: [10], 3: [12], 9: [13]}
    new = {c: r.tolist() for c, r in window.relevant("new").items()}
    assert new == {1: [11], 2: [10], 3: [12], 9: [13]}  # 2 bought 11 before, not 10
    with pytest.raises(ValueError, match="unknown task"):
        window.relevant("repeat")


class _Fixed:
    name = "fixed"

    def __init__(self, lists: dict[int, list[int]]) -> None:
        self.lists = lists

    def recommend(self, customer_ids, k=10, exclude_seen=True, *, items=None, exclude=None):
        banned = set() if exclude is None else set(map(tuple, exclude.to_numpy().tolist()))
        rows = [
            [p for p in self.lists.get(int(c), []) if (int(c), p) not in banned]
            for c in customer_ids
        ]
        ids = np.array([(r + [-1] * k)[:k] for r in rows]).reshape(len(rows), k)
        return Recommendations(np.asarray(customer_ids), ids, np.where(ids >= 0, 1.0, np.nan))


def test_lists_are_filled_from_the_fallback_without_what_the_task_excludes() -> None:
    model = _Fixed({1: [10], 2: [11, 12]})
    lists = _window().lists(model, [1, 2, 9], "new", k=3)
    # 1 bought 10 before: it leaves its list; the fill skips it too
    assert {c: r.tolist() for c, r in lists.items()} == {
        1: [12, 11, 13],
        2: [12, 10, 13],  # 11 was bought before
        9: [12, 10, 11],  # cold: the fill alone
    }
    repeat = _window().lists(model, [1], "all", k=3)
    assert repeat[1].tolist() == [10, 12, 11]


def test_score_is_a_flat_dict_over_every_buyer_of_the_window() -> None:
    model = _Fixed({1: [11, 10], 2: [10, 12], 3: [13]})
    m = _window().score(model, "all", k=2)
    assert m["model"] == "fixed" and m["users_evaluated"] == 4  # cold customer 9 included
    # 1: both hits; 2: hit at 1; 3: [13, 12] hit at 2; 9: fill [12, 10] misses 13
    assert m["hit_rate@2"] == pytest.approx(3 / 4)
    assert m["precision@2"] == pytest.approx((1 + 1 / 2 + 1 / 2 + 0) / 4)
    assert all(isinstance(v, int | float | str) for v in m.values())


def test_cold_start_buyers_are_scored_as_their_own_population() -> None:
    model = _Fixed({1: [11, 10], 2: [10, 12], 3: [13]})
    # 3 and 9 had no interaction before the window
    window = replace(_window(), known_customers=np.array([1, 2]))
    by_population = window.score_by_population(model, "all", k=2)
    assert set(by_population) == {"buyers", "cold_start", "returning"}
    cold, returning = by_population["cold_start"], by_population["returning"]
    assert (cold["users_evaluated"], returning["users_evaluated"]) == (2, 2)
    assert cold["hit_rate@2"] == pytest.approx(1 / 2)  # 3 hits 12 from the fill, 9 misses
    assert returning["hit_rate@2"] == pytest.approx(1.0)
    assert by_population["buyers"] == {
        k: v for k, v in window.score(model, "all", 2).items() if k != "model"
    }
    # without known customers, no split; an empty population is left out
    assert set(_window().score_by_population(model, "all", k=2)) == {"buyers"}
    everyone = replace(_window(), known_customers=np.array([1, 2, 3, 9]))
    assert set(everyone.score_by_population(model, "all", k=2)) == {"buyers", "returning"}
