"""Re-ranking with the live session, on a hand-made snapshot (serving/recommend.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from ml.session import Rules
from serving.recommend import Activity, recommend, similar_products
from serving.snapshot import Grouped, Snapshot

# products 1-9 sellable; 99 is in the lists but no longer sellable
NAMES = {p: f"Product {p}" for p in range(1, 10)}


def parts() -> dict[str, pa.Table]:
    return {
        "customer_lists": pa.table(
            {
                "customer_id": [7, 7, 7, 7],
                "rank": [1, 2, 3, 4],
                "product_id": [1, 2, 99, 3],
                "score": [0.9, 0.8, 0.7, 0.6],
                "reason": ["bought 3 times", "viewed on 2025-12-01", "x", "popular"],
            }
        ),
        "similar": pa.table(
            {
                "product_id": [5, 5, 6, 4],
                "rank": [1, 2, 1, 1],
                "similar_product_id": [6, 4, 8, 9],
                "similarity": [0.9, 0.5, 0.7, 0.4],
                "method": ["cf_cosine", "cf_cosine", "content", "cf_cosine"],
            }
        ),
        "bought_together": pa.table(
            {
                "product_id": [4, 4],
                "other_product_id": [7, 8],
                "confidence": [0.6, 0.2],
                "lift": [3.0, 1.5],
            }
        ),
        "trending": pa.table(
            {
                "scope": ["global", "global", "global", "city"],
                "scope_value": ["", "", "", "Lahore"],
                "product_id": [1, 2, 3, 9],
                "rank": [1, 2, 3, 1],
                "trending_score": [1.0, 0.9, 0.8, 1.0],
            }
        ),
        "catalogue": pa.table(
            {
                "product_id": list(NAMES),
                "product_name": list(NAMES.values()),
                "brand_name": ["B"] * 9,
                "category_name": ["C"] * 9,
                "list_price": [10.0] * 9,
            }
        ),
        "customers": pa.table({"customer_id": [7, 8], "city_name": ["Karachi", "Lahore"]}),
    }


MANIFEST = {
    "version": "v1",
    "created_at": dt.datetime(2026, 12, 1, tzinfo=dt.UTC).isoformat(),
    "champion": {},
}


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return Snapshot(MANIFEST, parts())


def ids(items: list[dict]) -> list[int]:
    return [i["product_id"] for i in items]


def test_grouped_finds_each_keys_rows_in_order() -> None:
    grouped = Grouped.of(
        pa.table({"k": [3, 1, 3, 1], "r": [2, 1, 1, 2], "v": [30, 10, 31, 11]}), "k", "r"
    )
    assert grouped.values["v"][grouped.rows(3)].tolist() == [31, 30]
    assert grouped.values["v"][grouped.rows(1)].tolist() == [10, 11]
    assert grouped.rows(2) == slice(0, 0) and 2 not in grouped and 1 in grouped


def test_without_a_session_the_batch_list_is_served_in_its_order(snapshot: Snapshot) -> None:
    items, strategy = recommend(snapshot, 7, Activity(), k=3)
    assert strategy == "personal"
    assert ids(items) == [1, 2, 3]  # 99 is not sellable any more
    assert items[0]["reason"] == "bought 3 times"


def test_a_viewed_product_brings_its_neighbours_first(snapshot: Snapshot) -> None:
    items, strategy = recommend(snapshot, 7, Activity(views=[5]), k=4)
    assert strategy == "personal+session"
    assert ids(items)[:2] == [6, 1]
    assert items[0]["reason"] == "similar to Product 5"
    assert items[1]["reason"] == "bought 3 times"  # the batch list follows


def test_the_cart_is_left_out_and_its_complements_come_in(snapshot: Snapshot) -> None:
    items, _ = recommend(snapshot, None, Activity(cart=[4]), k=3)
    assert 4 not in ids(items)
    assert ids(items)[:2] == [7, 9]  # confidence 0.6 beats similarity 0.4
    assert items[0]["reason"] == "often bought with Product 4"
    assert items[1]["reason"] == "similar to Product 4 in your cart"


def test_the_product_on_screen_steers_the_list_and_is_left_out(snapshot: Snapshot) -> None:
    items, _ = recommend(snapshot, 7, Activity(), k=3, context_product_id=5)
    assert ids(items)[0] == 6 and 5 not in ids(items)


def test_an_unknown_customer_gets_what_trends_in_the_city_then_nationally(
    snapshot: Snapshot,
) -> None:
    items, strategy = recommend(snapshot, 12345, Activity(), k=3, city="Lahore")
    assert strategy == "popular"
    assert ids(items) == [9, 1, 2]
    assert items[0]["reason"] == "trending in Lahore"
    assert not snapshot.known_customer(12345) and snapshot.known_customer(8)


def test_lists_hold_every_candidate_once_and_nothing_bought_in_the_session(
    snapshot: Snapshot,
) -> None:
    items, _ = recommend(snapshot, 7, Activity(views=[5], bought=[1]), k=10)
    assert sorted(ids(items)) == [2, 3, 4, 6]  # 1 bought now, 99 unsellable
    assert len(recommend(snapshot, 7, Activity(views=[5]), k=2)[0]) == 2


def test_with_a_session_model_the_session_part_is_its_prediction() -> None:
    model = Rules().fit([np.array(s) for s in ([5, 8], [5, 8], [5, 2], [3, 4])])
    with_model = Snapshot(MANIFEST, parts(), model)
    items, strategy = recommend(with_model, None, Activity(views=[5]), k=2)
    assert strategy == "session"
    assert ids(items) == [8, 2] and items[0]["reason"] == "often viewed with Product 5"


def test_similar_products_prefer_behaviour_then_content(snapshot: Snapshot) -> None:
    assert ids(similar_products(snapshot, 5, 5)) == [6, 4]
    assert ids(similar_products(snapshot, 6, 5)) == [8]  # content only


def test_the_published_session_share_sets_the_blend() -> None:
    """Customer 7 views product 5 (neighbours 6 and 4): with a share of 0 the batch list is
    served as it is; with a share of 1 the session's products lead."""
    model = {"session_model": {"algorithm": "rules", "version": "v1"}}

    def served(share: float | None) -> list[int]:
        manifest = {**MANIFEST, **model}
        manifest["session_model"] = {**model["session_model"], "session_share": share}
        tuned = Snapshot(manifest, parts())
        items, _ = recommend(tuned, 7, Activity(views=[5]), k=3)
        return ids(items)

    assert Snapshot(MANIFEST, parts()).session_share == 0.6  # nothing tuned: the default
    assert served(0.0) == [1, 2, 3]
    assert served(1.0) == [6, 4, 1]  # the session first, then the batch list fills
