"""The live blend and the tuning of its session share (ml/blend.py), on hand-made sessions."""

from __future__ import annotations

import numpy as np

from ml.blend import (
    SESSION_SHARE,
    Point,
    Scored,
    ShareScores,
    best_share,
    blend,
    points_of,
    ranked,
    score_shares,
)


def test_blend_weighs_the_batch_rank_against_the_session_score() -> None:
    batch = [(1, "bought"), (2, "bought"), (3, "popular")]
    session = {3: Scored(2.0, 2.0, "similar"), 4: Scored(1.0, 1.0, "similar")}
    half = blend(batch, session, 0.5)
    # 3: batch 1/3 and the session's best (2/2) → 0.5/3 + 0.5; 1: batch 1 → 0.5
    assert round(half[3].score, 4) == round(0.5 / 3 + 0.5, 4)
    assert half[3].reason == "similar"  # the larger contribution names it
    assert ranked(half, 2) == [3, 1]
    assert ranked(blend(batch, session, 0.0), 3) == [1, 2, 3]
    assert ranked(blend(batch, session, 1.0), 3) == [3, 4]
    assert ranked(blend(batch, {}, 1.0), 3) == [1, 2, 3]  # no session: the batch list alone


def test_points_are_every_prefix_of_the_sampled_sessions() -> None:
    sessions = [(7, np.array([1, 2, 3])), (8, np.array([4])), (9, np.array([5, 6]))]
    assert points_of(sessions, limit=10) == [
        Point(7, (1,), 2),
        Point(7, (1, 2), 3),
        Point(9, (5,), 6),
    ]
    sampled = points_of(sessions, limit=1, seed=3)
    assert sampled == points_of(sessions, limit=1, seed=3)  # seeded
    assert len({p.customer_id for p in sampled}) == 1


def test_scores_favour_the_share_that_predicts_the_next_product() -> None:
    """Customer 7 goes on to the top of their list, customer 8 to what the session model
    predicts first: each extreme wins one, a blend wins both at k=2."""
    points = [Point(7, (10,), 1), Point(8, (20,), 21)]
    lists = {7: [1, 2, 3], 8: [3, 4, 5]}

    def session(prefix: list[int]) -> list[tuple[int, float]]:
        return [(prefix[-1] + 1, 1.0), (prefix[-1] + 2, 0.5)]

    scores = score_shares(points, lists, session, shares=(0.0, 0.5, 1.0), k=2)
    assert scores.hr == {0.0: 0.5, 0.5: 1.0, 1.0: 0.5}
    assert scores.mrr[0.5] == 0.75  # 1 first for customer 7 (0.5 each: the lower id), 21 second
    assert best_share(scores) == 0.5


def test_ties_stay_near_the_default() -> None:
    scores = ShareScores(hr={0.0: 0.2, 0.5: 0.2, 1.0: 0.2}, mrr={0.0: 0.1, 0.5: 0.1, 1.0: 0.1})
    assert best_share(scores) == min(scores.hr, key=lambda s: abs(s - SESSION_SHARE))


def test_the_batch_list_fills_the_slots_the_session_leaves() -> None:
    scores = blend([(1, ""), (2, "")], {5: Scored(1.0, 1.0, "")}, 1.0)
    assert ranked(scores, 3, fill=[1, 2]) == [5, 1, 2]
    assert ranked(scores, 3, fill=[5, 1]) == [5, 1]  # nothing twice
