"""Routing of consumed messages into bronze rows and dead letters (no Kafka, no Delta)."""

from __future__ import annotations

import datetime as dt
import uuid

import orjson

from streaming.records import (
    CONTRACT_VIOLATION,
    DEAD_LETTER_SCHEMA,
    EMPTY,
    EVENTS_SCHEMA,
    INVALID_JSON,
    UNDECODABLE,
    UNKNOWN_EVENT_TYPE,
    BatchBuilder,
)

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def event(**overrides) -> dict:
    base = {
        "event_id": str(uuid.uuid4()),
        "event_time": "2025-11-28T23:59:59.5Z",
        "event_type": "purchase",
        "session_id": "s-1",
        "customer_id": 7,
        "product_id": 11,
        "price": 1250.0,
        "quantity": 2,
        "order_id": 99,
        "device": "desktop_web",
        "city": "Lahore",
        "schema_version": "1.0",
    }
    return {**base, **overrides}


def build(values: list[bytes | None]) -> tuple:
    batch = BatchBuilder("clicks")
    for offset, value in enumerate(values):
        batch.add(offset % 2, offset, b"key", value, 1_700_000_000_000 + offset)
    return batch, *batch.tables("batch-1", NOW)


def test_good_events_become_typed_rows_with_lineage() -> None:
    good = event()
    batch, events, dead = build([orjson.dumps(good)])
    assert events.schema == EVENTS_SCHEMA and dead.schema == DEAD_LETTER_SCHEMA
    row = events.to_pylist()[0]
    assert dead.num_rows == 0
    assert row["event_id"] == good["event_id"]
    assert row["event_time"] == dt.datetime(2025, 11, 28, 23, 59, 59, 500000, tzinfo=dt.UTC)
    assert row["event_date"] == dt.date(2025, 11, 28)
    assert (row["customer_id"], row["quantity"], row["price"]) == (7, 2, 1250.0)
    assert orjson.loads(row["payload"]) == good
    assert (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"]) == ("clicks", 0, 0)
    assert row["kafka_key"] == b"key"
    assert row["kafka_timestamp"] == dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)
    assert (row["ingested_at"], row["batch_id"]) == (NOW, "batch-1")
    assert batch.last_offsets == {0: 0}


def test_newer_minor_version_and_unknown_fields_are_kept() -> None:
    drifted = event(schema_version="1.1", loyalty_tier="gold")
    _, events, dead = build([orjson.dumps(drifted)])
    assert dead.num_rows == 0
    row = events.to_pylist()[0]
    assert row["schema_version"] == "1.1"
    assert orjson.loads(row["payload"])["loyalty_tier"] == "gold"


def test_every_kind_of_bad_message_is_a_dead_letter_with_its_bytes() -> None:
    bad = [
        b"\xff\xfe\x00garbage",
        b'{"event_id": "x",',
        orjson.dumps(event(event_type="teleport")),
        orjson.dumps({k: v for k, v in event().items() if k != "session_id"}),
        orjson.dumps(event(customer_id="seven")),
        orjson.dumps(event(event_time="2025-02-30T10:00:00Z")),
        orjson.dumps(event(order_id=2**63)),
        None,
    ]
    good = orjson.dumps(event())
    batch, events, dead = build([*bad, good])
    assert events.num_rows == 1
    assert events.column("kafka_offset").to_pylist() == [len(bad)]
    rows = dead.to_pylist()
    assert [r["kafka_offset"] for r in rows] == list(range(len(bad)))
    assert [r["raw_value"] for r in rows] == bad
    assert [r["error_kind"] for r in rows] == [
        UNDECODABLE,
        INVALID_JSON,
        UNKNOWN_EVENT_TYPE,
        CONTRACT_VIOLATION,
        CONTRACT_VIOLATION,
        CONTRACT_VIOLATION,
        CONTRACT_VIOLATION,
        EMPTY,
    ]
    assert "session_id" in rows[3]["reason"]
    assert "2025-02-30" in rows[5]["reason"]
    assert batch.last_offsets == {0: len(bad), 1: len(bad) - 1}


def test_a_value_no_column_can_hold_moves_only_that_event_to_dead_letters() -> None:
    # Valid by the contract (a positive integer) but beyond int64: must not fail the batch.
    too_many = orjson.dumps(event(quantity=2**63))
    good = [orjson.dumps(event()) for _ in range(3)]
    _, events, dead = build([good[0], too_many, good[1], good[2]])
    assert events.column("kafka_offset").to_pylist() == [0, 2, 3]
    assert dead.column("kafka_offset").to_pylist() == [1]
    assert dead.column("raw_value").to_pylist() == [too_many]
    assert "quantity" in dead.column("reason")[0].as_py()
