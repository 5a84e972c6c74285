"""Session recommenders and the next-item evaluation (ml/session.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.session import VSKNN, ItemKNN, Popular, Rules, evaluate_next_item, sessions_of

# phones lead to cases and headphones; laptops to bags; 9 is popular on its own
SESSIONS = ([1, 2, 3], [1, 2], [1, 3], [4, 5], [4, 5], [4, 5], [9], [9], [9], [9], [9, 1])
TRAIN = [np.array(s) for s in SESSIONS]


def test_sessions_are_ordered_by_their_start_without_consecutive_repeats() -> None:
    events = pd.DataFrame(
        {
            "session_id": ["b", "a", "a", "a", "b", "a"],
            "event_time": pd.to_datetime([5, 1, 2, 3, 6, 4], unit="s"),
            "product_id": [7, 1, 1, 2, 8, 1],
        }
    )
    assert [s.tolist() for s in sessions_of(events)] == [[1, 2, 1], [7, 8]]


def test_popular_ranks_products_by_sessions() -> None:
    assert [p for p, _ in Popular().fit(TRAIN).recommend([4], 2)] == [9, 1]


@pytest.mark.parametrize("model", [Rules(), ItemKNN(), VSKNN()])
def test_the_last_product_leads_to_what_follows_it_in_other_sessions(model) -> None:
    model.fit(TRAIN)
    assert [p for p, _ in model.recommend([4], 3)][0] == 5
    assert {p for p, _ in model.recommend([1], 3)} >= {2, 3}
    assert model.recommend([999], 3) == []  # an unknown product: nothing to say


def test_vsknn_weighs_the_newest_product_most() -> None:
    model = VSKNN().fit(TRAIN)
    assert model.recommend([1, 4], 1)[0][0] == 5
    assert model.recommend([4, 1], 1)[0][0] in (2, 3)


def test_hit_rate_and_mrr_count_every_prefix() -> None:
    model = Rules().fit(TRAIN)
    score = evaluate_next_item(model, [np.array([4, 5, 6]), np.array([7])], k=2)
    # prefixes [4] → 5 (rank 1), [4, 5] → 6 (never seen): one hit in two predictions
    assert score.predictions == 2 and score.hr == 0.5 and score.mrr == 0.5
