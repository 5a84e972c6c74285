"""What shoppers did with the lists they were shown, as training data for the ranker.

Every product a recommendation answer showed (`gold.recommendation_exposures`) becomes a row of
a query group (one group per answer) with a graded label:

- 2: added to the cart or bought after it was shown (attributed to this answer, last touch);
- 1: clicked;
- 0: shown and ignored: the negatives.

Clicks are biased by position: a shopper reads from the top, so the first slot is clicked more
whatever it holds. The position travels with every row, and the ranker corrects for it with
LightGBM's position-debiased LambdaMART (`lightgbm.Dataset(position=...)`, after Unbiased
LambdaMART, Hu et al. 2019): it learns a bias per position jointly with the ranker instead of
taking clicks at face value.

Only answers to signed-in customers (the ranker's features are per customer) with at least one
positive teach anything: a group without a positive has no pair to order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import ndcg_score

from ml.ranker import LearnedRanker, train

COLUMNS = [
    "request_id",
    "customer_id",
    "product_id",
    "position",
    "shown_at",
    "clicked",
    "carted",
    "purchased",
]
CLICKED, ACTED = 1, 2
FEEDBACK_DAYS = 28  # the newest days of answers the nightly ranker learns from
HOLDOUT_SHARE = 0.25  # the latest answers, by time, the feedback evaluation scores on


def feedback(exposures: pd.DataFrame) -> pd.DataFrame:
    """Training rows (request_id, customer_id, product_id, position, shown_at, label) from
    exposure rows (`COLUMNS`), sorted by answer and position; answers of anonymous sessions and
    answers nobody acted on are dropped."""
    rows = exposures.dropna(subset=["customer_id", "product_id", "position"])
    label = np.where(
        rows["carted"].fillna(False) | rows["purchased"].fillna(False),
        ACTED,
        np.where(rows["clicked"].fillna(False), CLICKED, 0),
    )
    out = pd.DataFrame(
        {
            "request_id": rows["request_id"].to_numpy(),
            "customer_id": rows["customer_id"].to_numpy(np.int64),
            "product_id": rows["product_id"].to_numpy(np.int64),
            "position": rows["position"].to_numpy(np.int32),
            # UTC, without a zone: compared with day boundaries
            "shown_at": pd.to_datetime(rows["shown_at"], utc=True).dt.tz_localize(None).to_numpy(),
            "label": label.astype(np.int32),
        }
    )
    useful = out.groupby("request_id")["label"].transform("max") > 0
    return out[useful.to_numpy()].sort_values(["request_id", "position"], ignore_index=True)


def settled_before(rows: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """The answers shown before `day` began: the day in which a cart or purchase is credited to
    them (ATTRIBUTION_WINDOW in spark_jobs/gold.py) is over by the end of `day`, so none of
    their labels comes from after it."""
    return rows[rows["shown_at"] < pd.Timestamp(day)]


def holdout(rows: pd.DataFrame, share: float = HOLDOUT_SHARE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(earlier, later): the answers split by the time they were shown, the latest `share`
    of them held out; an answer's rows stay together."""
    shown = rows.groupby("request_id")["shown_at"].min().sort_values(kind="stable")
    later = shown.index[int(round(len(shown) * (1 - share))) :]
    held = rows["request_id"].isin(later).to_numpy()
    return rows[~held].reset_index(drop=True), rows[held].reset_index(drop=True)


def ranking_ndcg(rows: pd.DataFrame, scores: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over the answers of `rows` (request_id, label) when each answer's products
    are re-ordered by `scores` (higher first), graded by the labels (scikit-learn's ndcg_score
    on the answers padded to one width)."""
    if not len(rows):
        return float("nan")
    codes, _ = pd.factorize(rows["request_id"])
    slot = pd.Series(codes).groupby(codes).cumcount().to_numpy()
    width = max(int(slot.max()) + 1, 2)  # ndcg_score needs two columns at least
    truth = np.zeros((codes.max() + 1, width))
    ranked = np.full_like(truth, np.min(scores) - 1.0 if len(scores) else 0.0)
    truth[codes, slot] = rows["label"].to_numpy(np.float64)
    ranked[codes, slot] = scores
    return float(ndcg_score(truth, ranked, k=k))


def served_order(rows: pd.DataFrame) -> np.ndarray:
    """The order the answers were shown in, as scores: the baseline every ranker is scored
    against on the held-out answers."""
    return -rows["position"].to_numpy(np.float64)


def graded(rows: pd.DataFrame, relevance: Callable[[int, np.ndarray], np.ndarray]) -> pd.DataFrame:
    """`rows` with its labels replaced by `relevance(customer_id, product_ids)` per answer:
    scoring against a known truth (the simulated audience's tastes) instead of biased clicks."""
    out = rows.copy()
    values = np.empty(len(rows))
    products = rows["product_id"].to_numpy()
    for (_, customer), index in rows.groupby(["request_id", "customer_id"]).indices.items():
        values[index] = relevance(int(customer), products[index])
    return out.assign(label=values)


def evaluate(
    ranker: LearnedRanker,
    daily: pd.DataFrame,
    rows: pd.DataFrame,
    as_of: dt.date,
    k: int = 10,
    relevance: Callable[[int, np.ndarray], np.ndarray] | None = None,
    face_value: bool = False,
) -> dict[str, dict[str, dict[str, float]]]:
    """Does learning from earlier answers order later ones better? The latest answers are
    held out (`holdout`); the ranker's purchase groups end before the first of them, and
    rankers re-order them: without feedback, with the earlier answers debiased by position (the
    production form) and, with `face_value`, with their clicks taken at face value (one more
    LightGBM fit: minutes on the demo, so the nightly run leaves it to `bench/feedback.py`).
    The order they were served in is the baseline.
    Per target, then model: NDCG@k graded by what shoppers did (`clicks`: biased towards the
    served order, whose top slots were seen most) and, when `relevance` knows the truth, by it
    (`truth`). Empty when there are not answers enough on both sides."""
    earlier, later = holdout(rows)
    if earlier.empty or later.empty:
        return {}
    first_held = pd.Timestamp(later["shown_at"].min()).date()
    purchases = ranker.purchase_data(daily, min(as_of, first_held - dt.timedelta(days=1)))
    answers = ranker.feedback_data(daily, rows)  # the snapshots of their weeks, built once
    learned = answers.answers(earlier["request_id"].unique())
    held = answers.answers(later["request_id"].unique())
    assert held.rows is not None
    scores = {
        "served": served_order(held.rows),
        "ranker": train([purchases], debias=False).predict(held.matrix),
    }
    if face_value:
        scores["ranker_feedback"] = train([purchases, learned], debias=False).predict(held.matrix)
    scores["ranker_feedback_debiased"] = train([purchases, learned], debias=True).predict(
        held.matrix
    )
    truths = {"clicks": held.rows}
    if relevance is not None:
        truths["truth"] = graded(held.rows, relevance)
    sizes = {"answers": float(len(held.groups)), "training_answers": float(len(learned.groups))}
    return {
        target: {
            model: {f"ndcg@{k}": ranking_ndcg(truth, score, k), **sizes}
            for model, score in scores.items()
        }
        for target, truth in truths.items()
    }
