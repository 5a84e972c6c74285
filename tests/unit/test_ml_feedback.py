"""Feedback into training: the shown lists' clicks and carts as ranker groups, their features
from before they were shown, and a ranker that learns what shoppers want from them."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ml import feedback
from ml.ranker import FEEDBACK_SNAPSHOT_DAYS, Catalogue, LearnedRanker
from tests.unit.test_ml_ranker import DAYS, DURABLES, START, _world

SHOWN_FROM = DAYS - 28  # the answers: the world's last four weeks


def _exposure(request: str, customer: float | None, product: int, position: int, **acts) -> dict:
    return {
        "request_id": request,
        "customer_id": customer,
        "product_id": product,
        "position": position,
        "shown_at": pd.Timestamp("2025-03-01 10:00") + pd.Timedelta(minutes=position),
        "clicked": acts.get("clicked", False),
        "carted": acts.get("carted", False),
        "purchased": acts.get("purchased", False),
    }


def test_shown_products_become_graded_groups_of_the_answers_somebody_acted_on() -> None:
    rows = feedback.feedback(
        pd.DataFrame(
            [
                _exposure("a", 1, 10, 1),
                _exposure("a", 1, 11, 2, clicked=True),
                _exposure("a", 1, 12, 3, carted=True),
                _exposure("b", None, 10, 1, clicked=True),  # anonymous: no customer features
                _exposure("c", 2, 10, 1),  # ignored: nothing to order
                _exposure("c", 2, 11, 2),
            ]
        )
    )
    assert rows["request_id"].tolist() == ["a", "a", "a"]
    assert rows["label"].tolist() == [0, feedback.CLICKED, feedback.ACTED]
    assert rows["position"].tolist() == [1, 2, 3]
    # Delta's UTC times come without their zone, to compare with day boundaries
    zoned = feedback.feedback(
        pd.DataFrame([_exposure("z", 1, 10, 1, clicked=True)]).assign(
            shown_at=pd.Timestamp("2025-03-01 10:00", tz="UTC")
        )
    )
    assert (zoned["shown_at"] < pd.Timestamp("2025-03-02")).all()


def test_the_latest_answers_are_held_out_whole() -> None:
    rows = pd.DataFrame(
        {
            "request_id": ["a", "a", "b", "b", "c", "c", "d", "d"],
            "shown_at": pd.to_datetime([f"2025-01-0{d}" for d in (1, 1, 2, 2, 4, 4, 3, 3)]),
        }
    )
    earlier, later = feedback.holdout(rows, share=0.25)
    assert set(earlier["request_id"]) == {"a", "b", "d"}
    assert later["request_id"].tolist() == ["c", "c"]


def test_a_fit_learns_only_from_answers_whose_credit_was_settled_by_its_end() -> None:
    rows = pd.DataFrame(
        {
            "request_id": ["old", "eve", "late"],
            "shown_at": pd.to_datetime(
                ["2025-02-27 10:00", "2025-02-28 23:59", "2025-03-01 00:10"]
            ),
        }
    )
    # a fit up to 2025-03-01: "late" may be credited with a purchase of 2025-03-02
    kept = feedback.settled_before(rows, dt.date(2025, 3, 1))
    assert kept["request_id"].tolist() == ["old", "eve"]


def test_ndcg_of_answers_rewards_putting_what_was_clicked_first() -> None:
    rows = pd.DataFrame({"request_id": ["a"] * 3 + ["b"] * 2, "label": [0, 0, 1, 2, 0]})
    best = np.array([0.0, 0.1, 0.9, 0.9, 0.0])
    assert feedback.ranking_ndcg(rows, best) == pytest.approx(1.0)
    worst = np.array([0.9, 0.5, 0.1, 0.0, 0.9])
    assert feedback.ranking_ndcg(rows, worst) < 0.6
    served = feedback.served_order(rows.assign(position=[1, 2, 3, 1, 2]))
    assert feedback.ranking_ndcg(rows, served) == pytest.approx((0.5 + 1.0) / 2)


# ---------------------------------------------------------------------------------------------
# A world whose shoppers click cheap durables: nothing in their purchases says so (they bought
# durables at random), so only the feedback can teach it. The lists are served most expensive
# first and clicks fall with position, so clicks taken at face value also reward the top slots.


def _cheap(catalogue: Catalogue) -> tuple[Catalogue, pd.Series]:
    """Durables priced 5,000..50,000, and how much a shopper wants each (the truth): 1 for the
    cheapest, falling with price."""
    products = catalogue.products.copy()
    durables = products["product_id"].isin(DURABLES)
    prices = np.linspace(5_000, 50_000, int(durables.sum()))
    products.loc[durables, "price"] = np.random.default_rng(1).permutation(prices)
    want = pd.Series(0.0, index=products["product_id"])
    want[products.loc[durables, "product_id"]] = (
        5_000 / products.loc[durables, "price"]
    ).to_numpy()
    return Catalogue(products, catalogue.cities), want


def _answers(want: pd.Series, prices: pd.Series, answers: int = 1_500) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    rows = []
    for i in range(answers):
        day = SHOWN_FROM + int(rng.integers(0, 28))
        shown = rng.choice(list(DURABLES), 8, replace=False)
        shown = shown[np.argsort(-prices[shown].to_numpy())]  # most expensive first
        at = pd.Timestamp(START) + pd.Timedelta(days=day, hours=12, seconds=i)
        for position, product in enumerate(shown, start=1):
            clicked = rng.random() < want[product] / np.log2(position + 1)
            rows.append(
                _exposure(f"r{i}", int(rng.integers(0, 150)), int(product), position)
                | {"shown_at": at, "clicked": bool(clicked)}
            )
    return feedback.feedback(pd.DataFrame(rows))


@pytest.fixture(scope="module")
def shop() -> tuple[pd.DataFrame, Catalogue, pd.Series, pd.DataFrame]:
    daily, catalogue = _world()
    catalogue, want = _cheap(catalogue)
    prices = catalogue.products.set_index("product_id")["price"]
    return daily, catalogue, want, _answers(want, prices)


def test_an_answer_is_featured_from_before_the_week_it_was_shown(shop) -> None:
    daily, catalogue, _, rows = shop
    ranker = LearnedRanker(catalogue, window_days=7)
    shown = rows[rows["request_id"].isin(rows["request_id"].unique()[:40])]
    week = pd.to_datetime(shown["shown_at"]).dt.floor("D").to_numpy("datetime64[D]").astype(int)
    first = int((week - week % FEEDBACK_SNAPSHOT_DAYS).min())
    # the rows from the first shown week on change nothing in that week's answers' features
    before = daily[pd.to_datetime(daily["interaction_date"]) < pd.Timestamp(first, unit="D")]
    in_week = week - week % FEEDBACK_SNAPSHOT_DAYS == first
    ids = shown["request_id"][in_week].unique()
    mine = shown[shown["request_id"].isin(ids)]
    with_all = ranker.feedback_data(daily, mine)
    without_later = ranker.feedback_data(before, mine)
    pd.testing.assert_frame_equal(with_all.matrix, without_later.matrix)
    assert with_all.groups.sum() == len(mine)
    assert with_all.position.tolist() == with_all.rows["position"].tolist()


def test_the_ranker_learns_from_the_answers_what_purchases_never_showed(shop) -> None:
    daily, catalogue, want, rows = shop
    as_of = START + dt.timedelta(days=DAYS - 1)
    ranker = LearnedRanker(catalogue, window_days=7)
    scores = feedback.evaluate(
        ranker,
        daily,
        rows,
        as_of,
        relevance=lambda _, products: want[products].to_numpy(),
        face_value=True,
    )
    assert not ranker.training  # evaluating leaves the ranker's own record alone
    truth = {model: v["ndcg@10"] for model, v in scores["truth"].items()}
    # served most expensive first: the worst order there is
    assert truth["served"] < truth["ranker"]
    # the clicks teach what the purchases could not, with and without the position correction
    # (on this world, where clicks follow a product feature, both learn it: 0.82 and 0.86)
    assert truth["ranker_feedback_debiased"] > truth["ranker"] + 0.03
    assert truth["ranker_feedback"] > truth["ranker"] + 0.03
    held = feedback.holdout(rows)[1]["request_id"].nunique()
    assert scores["clicks"]["ranker"]["answers"] == held

    fitted = LearnedRanker(catalogue, window_days=7).fit(daily, as_of, rows)
    assert fitted.training["feedback_answers"] == rows["request_id"].nunique()
    assert fitted.__getstate__()["_purchases"] == {}  # the registry stores no training data
