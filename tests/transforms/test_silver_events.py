"""silver_events.build / version_at on hand-made bronze rows: dedup, future/late/orphan
quarantine with reasons and details, SCD2 keys, sessions across midnight."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from decimal import Decimal

import pytest

from spark_jobs import silver_events
from spark_jobs.silver_events import DUPLICATE, FUTURE, LATE, UNKNOWN_CUSTOMER, UNKNOWN_PRODUCT
from tests.transforms.frames import by, d, rows, ts

pytestmark = pytest.mark.integration

# bronze.events as the ingester writes it (streaming/records.py EVENTS_SCHEMA)
BRONZE_EVENTS = (
    "event_date DATE, event_time TIMESTAMP, event_id STRING, event_type STRING, "
    "session_id STRING, customer_id BIGINT, product_id BIGINT, category_path STRING, "
    "brand STRING, price DOUBLE, quantity BIGINT, order_id BIGINT, search_query STRING, "
    "device STRING, city STRING, schema_version STRING, payload STRING, kafka_topic STRING, "
    "kafka_partition INT, kafka_offset BIGINT, kafka_key BINARY, kafka_timestamp TIMESTAMP, "
    "ingested_at TIMESTAMP, batch_id STRING"
)
# silver.customers / silver.products: only the columns version_at reads, plus is_current
CUSTOMERS = (
    "customer_sk BIGINT, customer_id BIGINT, valid_from TIMESTAMP, valid_to TIMESTAMP, "
    "is_current BOOLEAN, version INT"
)
PRODUCTS = CUSTOMERS.replace("customer", "product")
OPEN_END = ts("9999-12-31 00:00")

D = d("2025-03-02")
LATENESS = dt.timedelta(hours=6)
TOLERANCE = dt.timedelta(minutes=5)

_offsets = itertools.count(100)


def event(
    event_id: str,
    at: str,
    *,
    sent: str | None = None,
    session: str = "s1",
    type_: str = "page_view",
    customer: int | None = None,
    product: int | None = None,
    price: float | None = None,
    quantity: int | None = None,
    order: int | None = None,
    partition: int = 0,
    offset: int | None = None,
    fields: dict | None = None,
) -> tuple:
    """One bronze row; `sent` (the Kafka timestamp) defaults to 30 s after the event; `fields`
    are payload-only (contract 1.1) fields."""
    time = ts(at)
    kafka_ts = ts(sent) if sent else time + dt.timedelta(seconds=30)
    payload = {"event_id": event_id, "event_time": time.isoformat(), "event_type": type_}
    payload |= fields or {}
    return (
        time.date(),
        time,
        event_id,
        type_,
        session,
        customer,
        product,
        None,
        None,
        price,
        quantity,
        order,
        None,
        "mobile_web",
        "Lahore",
        "1.0",
        json.dumps(payload),
        "clickstream",
        partition,
        next(_offsets) if offset is None else offset,
        session.encode(),
        kafka_ts,
        kafka_ts,
        "batch-1",
    )


@pytest.fixture(scope="module")
def dims(spark):
    """Customer 1 (one version), customer 2 (moved on 2025-03-02), products 10 and 11."""
    customers = spark.createDataFrame(
        [
            (1001, 1, ts("2025-01-01 00:00"), OPEN_END, True, 1),
            (2001, 2, ts("2025-01-01 00:00"), ts("2025-03-02 00:00"), False, 1),
            (2002, 2, ts("2025-03-02 00:00"), OPEN_END, True, 2),
        ],
        CUSTOMERS,
    )
    products = spark.createDataFrame(
        [
            (5010, 10, ts("2025-01-01 00:00"), OPEN_END, True, 1),
            (5011, 11, ts("2025-01-01 00:00"), OPEN_END, True, 1),
        ],
        PRODUCTS,
    )
    return customers, products


def build(spark, dims, events: list[tuple], dates=(D,), **kw):
    return build_all(spark, dims, events, dates, **kw)[:2]


def build_all(spark, dims, events: list[tuple], dates=(D,), **kw):
    """(silver, quarantine, recommendation events)."""
    customers, products = dims
    kw = {"lateness": LATENESS, "future_tolerance": TOLERANCE, **kw}
    bronze = spark.createDataFrame(events, BRONZE_EVENTS)
    return silver_events.build(bronze, customers, products, list(dates), **kw)


def test_a_repeated_event_id_keeps_the_copy_with_the_lowest_partition_and_offset(
    spark, dims
) -> None:
    silver, quarantine = build(
        spark,
        dims,
        [
            event("e1", "2025-03-02 10:00", partition=1, offset=5),
            event("e1", "2025-03-02 10:00", partition=0, offset=9),
            event("e1", "2025-03-02 10:00", partition=0, offset=7),
            event("e2", "2025-03-02 10:01", partition=1, offset=6),
        ],
    )
    kept = by(silver, "event_id")
    assert set(kept) == {"e1", "e2"}
    assert (kept["e1"]["kafka_partition"], kept["e1"]["kafka_offset"]) == (0, 7)
    rejected = {
        (r["kafka_partition"], r["kafka_offset"]): (r["event_id"], r["reason"], r["detail"])
        for r in rows(quarantine)
    }
    assert rejected == {
        (0, 9): ("e1", DUPLICATE, "copy 2 of the event"),
        (1, 5): ("e1", DUPLICATE, "copy 3 of the event"),
    }


def test_event_time_beyond_the_future_tolerance_is_quarantined(spark, dims) -> None:
    silver, quarantine = build(
        spark,
        dims,
        [
            event("f1", "2025-03-02 10:00", sent="2025-03-02 08:00"),  # 2 h ahead
            event("f2", "2025-03-02 10:05", sent="2025-03-02 10:00"),  # exactly the tolerance
            event("f3", "2025-03-02 10:06", sent="2025-03-02 10:00"),  # 6 min ahead
        ],
    )
    assert {r["event_id"] for r in rows(silver)} == {"f2"}
    assert {r["event_id"]: (r["reason"], r["detail"]) for r in rows(quarantine)} == {
        "f1": (FUTURE, "event_time 2.0 h after its Kafka timestamp"),
        "f3": (FUTURE, "event_time 0.1 h after its Kafka timestamp"),
    }


def test_events_arriving_after_the_lateness_window_are_quarantined(spark, dims) -> None:
    silver, quarantine = build(
        spark,
        dims,
        [
            event("l1", "2025-03-02 02:00", sent="2025-03-02 09:30"),  # 7.5 h late
            event("l2", "2025-03-02 03:00", sent="2025-03-02 09:00"),  # exactly the window
            event("l3", "2025-03-02 03:00", sent="2025-03-02 09:00:01"),  # 1 s beyond it
        ],
    )
    assert {r["event_id"] for r in rows(silver)} == {"l2"}
    assert {r["event_id"]: (r["reason"], r["detail"]) for r in rows(quarantine)} == {
        "l1": (LATE, "arrived 7.5 h after event_time (window 6.0 h)"),
        "l3": (LATE, "arrived 6.0 h after event_time (window 6.0 h)"),
    }
    # the window is a parameter: with 8 h, 7.5 h late is in time
    silver, quarantine = build(
        spark,
        dims,
        [event("l1", "2025-03-02 02:00", sent="2025-03-02 09:30")],
        lateness=dt.timedelta(hours=8),
    )
    assert [r["event_id"] for r in rows(silver)] == ["l1"]
    assert rows(quarantine) == []


def test_unknown_customers_and_products_are_orphans_anonymous_events_are_not(spark, dims) -> None:
    silver, quarantine = build(
        spark,
        dims,
        [
            event("o1", "2025-03-02 10:00", type_="product_view", customer=99, product=10),
            event("o2", "2025-03-02 10:01", type_="product_view", customer=1, product=77),
            event("o3", "2025-03-02 10:02", type_="product_view", product=10),
            event("o4", "2025-03-02 10:03"),
            event("o5", "2025-03-02 10:04", type_="product_view", customer=99, product=77),
        ],
    )
    assert {r["event_id"]: (r["reason"], r["detail"]) for r in rows(quarantine)} == {
        "o1": (UNKNOWN_CUSTOMER, "customer_id 99 is not in silver.customers"),
        "o2": (UNKNOWN_PRODUCT, "product_id 77 is not in silver.products"),
        "o5": (UNKNOWN_CUSTOMER, "customer_id 99 is not in silver.customers"),
    }
    kept = by(silver, "event_id")
    assert {k: (r["customer_sk"], r["product_sk"]) for k, r in kept.items()} == {
        "o3": (None, 5010),
        "o4": (None, None),
    }


def test_the_first_matching_rule_wins(spark, dims) -> None:
    silver, quarantine = build(
        spark,
        dims,
        [
            event("p1", "2025-03-02 10:00", offset=1),
            # the same event re-sent 8 h later: a duplicate, not late
            event("p1", "2025-03-02 10:00", sent="2025-03-02 18:00", offset=2),
            # from the future and of an unknown customer: future
            event("p2", "2025-03-02 12:00", sent="2025-03-02 11:00", customer=99, offset=3),
            # late and of an unknown product: late
            event(
                "p3",
                "2025-03-02 01:00",
                sent="2025-03-02 08:00",
                type_="add_to_cart",
                customer=1,
                product=77,
                offset=4,
            ),
        ],
    )
    assert {(r["event_id"], r["kafka_offset"]): r["reason"] for r in rows(quarantine)} == {
        ("p1", 2): DUPLICATE,
        ("p2", 3): FUTURE,
        ("p3", 4): LATE,
    }
    assert [(r["event_id"], r["kafka_offset"]) for r in rows(silver)] == [("p1", 1)]


def test_version_at_takes_the_version_valid_at_event_time(spark, dims) -> None:
    customers, _ = dims
    events = spark.createDataFrame(
        [
            ("a", 2, ts("2024-12-01 00:00")),  # before version 1 began: version 1 covers it
            ("b", 2, ts("2025-03-01 23:59:59")),
            ("c", 2, ts("2025-03-02 00:00")),  # valid_from is inclusive, valid_to exclusive
            ("d", 2, ts("2030-01-01 00:00")),
            ("e", 3, ts("2025-03-01 00:00")),  # no such customer
            ("f", None, ts("2025-03-01 00:00")),  # anonymous
        ],
        "event_id STRING, customer_id BIGINT, event_time TIMESTAMP",
    )
    keyed = silver_events.version_at(events, customers, "customer_id", "customer_sk")
    assert keyed.columns == ["event_id", "customer_id", "event_time", "customer_sk"]
    assert {r["event_id"]: r["customer_sk"] for r in rows(keyed)} == {
        "a": 2001,
        "b": 2001,
        "c": 2002,
        "d": 2002,
        "e": None,
        "f": None,
    }


def test_silver_rows_carry_the_keys_of_their_time_and_a_rounded_price(spark, dims) -> None:
    day_before = D - dt.timedelta(days=1)
    silver, quarantine = build(
        spark,
        dims,
        [
            event(
                "k1",
                "2025-03-01 12:00",
                session="a",
                type_="product_view",
                customer=2,
                product=11,
                price=19.999,
            ),
            event(
                "k2",
                "2025-03-02 12:00",
                session="b",
                type_="purchase",
                customer=2,
                product=10,
                price=5.005,
                quantity=3,
                order=77,
                partition=2,
                offset=40,
            ),
        ],
        dates=(day_before, D),
    )
    assert silver.columns == silver_events.SILVER_EVENT_COLUMNS
    assert quarantine.columns == [
        "event_date", "event_id", "event_time", "event_type", "reason", "detail", "payload",
        "kafka_partition", "kafka_offset", "kafka_timestamp",
    ]  # fmt: skip
    kept = by(silver, "event_id")
    assert {k: (r["event_date"], r["customer_sk"], r["product_sk"]) for k, r in kept.items()} == {
        "k1": (day_before, 2001, 5011),
        "k2": (D, 2002, 5010),
    }
    assert kept["k1"]["price"] == Decimal("20.00")
    k2 = kept["k2"]
    lineage = (k2["quantity"], k2["order_id"], k2["kafka_partition"], k2["kafka_offset"])
    assert lineage == (3, 77, 2, 40)
    assert k2["kafka_timestamp"] == ts("2025-03-02 12:00:30")


def test_sessions_crossing_midnight_see_the_neighbour_days(spark, dims) -> None:
    """Building 2025-03-02 from bronze of 03-01..03-03: only 03-02's rows come out, but their
    session bounds and sequence numbers count the events on either side of midnight."""
    silver, quarantine = build(
        spark,
        dims,
        [
            event("n1", "2025-03-01 23:50", session="night"),
            event("n2", "2025-03-01 23:55", session="night"),
            event("n3", "2025-03-02 00:05", session="night"),
            event("n4", "2025-03-02 00:10", session="night"),
            event("m1", "2025-03-02 23:58", session="late"),
            event("m2", "2025-03-03 00:03", session="late"),
            event("x1", "2025-03-03 10:00", session="next-day"),
        ],
    )
    got = {
        r["event_id"]: (r["event_date"], r["session_start"], r["session_end"], r["event_seq"])
        for r in rows(silver)
    }
    assert got == {
        "n3": (D, ts("2025-03-01 23:50"), ts("2025-03-02 00:10"), 3),
        "n4": (D, ts("2025-03-01 23:50"), ts("2025-03-02 00:10"), 4),
        "m1": (D, ts("2025-03-02 23:58"), ts("2025-03-03 00:03"), 1),
    }
    assert rows(quarantine) == []


def test_quarantine_holds_only_rows_of_the_dates_built(spark, dims) -> None:
    silver, quarantine = build(
        spark,
        dims,
        [
            event("q0", "2025-03-01 09:00", offset=1),
            event("q0", "2025-03-01 09:00", offset=2),  # duplicate on the day before
            event("q1", "2025-03-03 09:00", sent="2025-03-03 07:00"),  # future, the day after
            event("q2", "2025-03-02 01:00", sent="2025-03-02 09:00"),  # late, on the day built
            event("q3", "2025-03-02 10:00"),
        ],
    )
    assert [(r["event_id"], r["event_date"], r["reason"]) for r in rows(quarantine)] == [
        ("q2", D, LATE)
    ]
    assert [r["event_id"] for r in rows(silver)] == ["q3"]


def test_quarantined_events_are_not_part_of_sessions(spark, dims) -> None:
    silver, _ = build(
        spark,
        dims,
        [
            event("r1", "2025-03-02 09:00", sent="2025-03-02 16:00", offset=1),  # late
            event("r3", "2025-03-02 10:00", offset=2),
            event("r2", "2025-03-02 10:00", offset=3),  # same time: ordered by event_id
            event("r4", "2025-03-02 10:05", offset=4),
            event("r4", "2025-03-02 10:05", offset=5),  # duplicate
            event("r5", "2025-03-02 10:20", customer=99, offset=6),  # orphan
        ],
    )
    got = {
        r["event_id"]: (r["session_start"], r["session_end"], r["event_seq"]) for r in rows(silver)
    }
    start, end = ts("2025-03-02 10:00"), ts("2025-03-02 10:05")
    assert got == {"r2": (start, end, 1), "r3": (start, end, 2), "r4": (start, end, 3)}


def test_recommendation_events_leave_the_sessions_and_keep_their_payload_fields(
    spark, dims
) -> None:
    shown = {
        "request_id": "r1",
        "experiment": "ab",
        "variant": "champion",
        "model_version": "v1/hybrid",
        "recommended_product_ids": [11, 10],
    }
    silver, quarantine, recommendations = build_all(
        spark,
        dims,
        [
            event("v1", "2025-03-02 10:00", type_="product_view", customer=1, product=10),
            event("i1", "2025-03-02 10:01", type_="recommendation_impression", customer=1,
                  fields=shown),
            event("c1", "2025-03-02 10:02", type_="recommendation_click", customer=1,
                  product=11, fields={"request_id": "r1", "position": 1}),
            event("c1", "2025-03-02 10:02", type_="recommendation_click", customer=1,
                  product=11, fields={"request_id": "r1", "position": 1}),
            event("c2", "2025-03-02 10:03", type_="recommendation_click", product=99,
                  fields={"request_id": "r1", "position": 3}),
        ],
    )  # fmt: skip
    sessions = by(silver, "event_id")
    assert set(sessions) == {"v1"}
    assert sessions["v1"]["session_end"] == ts("2025-03-02 10:00")  # not stretched by them
    got = by(recommendations, "event_id")
    assert recommendations.columns == silver_events.RECOMMENDATION_EVENT_COLUMNS
    assert set(got) == {"i1", "c1"}
    assert (got["i1"]["request_id"], got["i1"]["variant"], got["i1"]["model_version"]) == (
        "r1",
        "champion",
        "v1/hybrid",
    )
    assert got["i1"]["recommended_product_ids"] == [11, 10]
    assert got["i1"]["customer_sk"] == 1001
    assert (got["c1"]["product_sk"], got["c1"]["position"]) == (5011, 1)
    rejected = {(r["event_id"], r["reason"]) for r in rows(quarantine)}
    assert rejected == {("c1", DUPLICATE), ("c2", UNKNOWN_PRODUCT)}
