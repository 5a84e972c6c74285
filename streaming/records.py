"""Consumed Kafka messages → Arrow rows for `bronze.events` and `bronze.events_dead_letter`.

Pure code (no Kafka, no Delta) so the routing rules are unit-tested on their own. A message is a
good event when its bytes are UTF-8 JSON that satisfies the contract (streaming/contract.py);
anything else becomes a dead letter carrying the raw bytes, why it was rejected and where it came
from. Good events keep their payload text exactly as received, so fields added by newer 1.x
producers are never lost even before a column exists for them.
"""

from __future__ import annotations

import datetime as dt

import orjson
import pyarrow as pa

from streaming.contract import validate_event

UTC_US = pa.timestamp("us", tz="UTC")

# Contract fields promoted to typed columns, in the contract's order.
EVENT_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("event_id", pa.string()),
    ("event_type", pa.string()),
    ("session_id", pa.string()),
    ("customer_id", pa.int64()),
    ("product_id", pa.int64()),
    ("category_path", pa.string()),
    ("brand", pa.string()),
    ("price", pa.float64()),
    ("quantity", pa.int64()),
    ("order_id", pa.int64()),
    ("search_query", pa.string()),
    ("device", pa.string()),
    ("city", pa.string()),
    ("schema_version", pa.string()),
)

LINEAGE_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("kafka_topic", pa.string()),
    ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
    ("kafka_key", pa.binary()),
    ("kafka_timestamp", UTC_US),
    ("ingested_at", UTC_US),
    ("batch_id", pa.string()),
)

EVENTS_SCHEMA = pa.schema(
    [
        ("event_date", pa.date32()),
        ("event_time", UTC_US),
        *EVENT_FIELDS,
        ("payload", pa.string()),
        *LINEAGE_FIELDS,
    ]
)
EVENTS_PARTITION_BY = ["event_date"]

DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("error_kind", pa.string()),
        ("reason", pa.string()),
        ("raw_value", pa.binary()),
        *LINEAGE_FIELDS,
    ]
)

# Why a message was rejected, coarse enough to chart.
UNDECODABLE = "undecodable"
INVALID_JSON = "invalid_json"
CONTRACT_VIOLATION = "contract_violation"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
EMPTY = "empty_message"


def classify(value: bytes | None) -> tuple[dict | None, str | None, str | None]:
    """(event, error kind, reason) for one message value; the event when it is good."""
    if not value:
        return None, EMPTY, "message has no value (null or zero bytes)"
    try:
        event = orjson.loads(value)  # also checks UTF-8
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as decode_error:
            return None, UNDECODABLE, f"not UTF-8: {decode_error}"
        return None, INVALID_JSON, f"invalid JSON: {exc}"
    reason = validate_event(event)
    if reason is None:
        return event, None, None
    kind = UNKNOWN_EVENT_TYPE if reason.startswith("unknown event_type") else CONTRACT_VIOLATION
    return None, kind, reason


# (partition, offset, key, Kafka timestamp in ms) of one message
Lineage = tuple[int, int, bytes | None, int]


def _lineage_columns(
    rows: list[Lineage], topic: str, batch_id: str, ingested_at: dt.datetime
) -> list[pa.Array]:
    partitions, offsets, keys, timestamps = zip(*rows, strict=True) if rows else ([], [], [], [])
    n = len(rows)
    return [
        pa.array([topic] * n, pa.string()),
        pa.array(partitions, pa.int32()),
        pa.array(offsets, pa.int64()),
        pa.array(keys, pa.binary()),
        pa.array(timestamps, pa.int64()).cast(pa.timestamp("ms", tz="UTC")).cast(UTC_US),
        pa.array([ingested_at] * n, UTC_US),
        pa.array([batch_id] * n, pa.string()),
    ]


class BatchBuilder:
    """Accumulates one batch of consumed messages, routing each to events or dead letters.

    `add` runs once per message, so it does as little as possible: parse, validate, append.
    Columns are built once per batch in `tables`."""

    def __init__(self, topic: str):
        self.topic = topic
        self.last_offsets: dict[int, int] = {}  # partition -> last offset in this batch
        self._events: list[dict] = []
        self._payloads: list[bytes] = []
        self._good: list[Lineage] = []
        self._bad: list[tuple[str, str, bytes | None]] = []  # kind, reason, raw value
        self._bad_lineage: list[Lineage] = []

    def __len__(self) -> int:
        return len(self._good) + len(self._bad)

    def add(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None, ts_ms: int
    ) -> None:
        self.last_offsets[partition] = offset
        event, kind, reason = classify(value)
        if event is not None:
            self._events.append(event)
            self._payloads.append(value)
            self._good.append((partition, offset, key, ts_ms))
        else:
            self._bad.append((kind, reason, value))
            self._bad_lineage.append((partition, offset, key, ts_ms))

    def tables(self, batch_id: str, ingested_at: dt.datetime) -> tuple[pa.Table, pa.Table]:
        """(events, dead letters) as Arrow tables in the bronze schemas."""
        try:
            good = self._events_table(batch_id, ingested_at)
        except (pa.ArrowInvalid, OverflowError, TypeError, ValueError):
            self._reject_unstorable()
            good = self._events_table(batch_id, ingested_at)
        kinds, reasons, raw = zip(*self._bad, strict=True) if self._bad else ([], [], [])
        bad = pa.Table.from_arrays(
            [
                pa.array(kinds, pa.string()),
                pa.array(reasons, pa.string()),
                pa.array(raw, pa.binary()),
                *_lineage_columns(self._bad_lineage, self.topic, batch_id, ingested_at),
            ],
            schema=DEAD_LETTER_SCHEMA,
        )
        return good, bad

    def _events_table(self, batch_id: str, ingested_at: dt.datetime) -> pa.Table:
        events = self._events
        typed = [pa.array([e.get(name) for e in events], type_) for name, type_ in EVENT_FIELDS]
        event_time = pa.array([e["event_time"] for e in events], pa.string()).cast(UTC_US)
        return pa.Table.from_arrays(
            [
                event_time.cast(pa.date32()),
                event_time,
                *typed,
                pa.array(self._payloads, pa.binary()).cast(pa.string()),
                *_lineage_columns(self._good, self.topic, batch_id, ingested_at),
            ],
            schema=EVENTS_SCHEMA,
        )

    def _reject_unstorable(self) -> None:
        """Slow path, taken only when a batch holds a value its column cannot store (a price
        beyond float range, say): move those events to the dead letters."""
        rows = zip(self._events, self._payloads, self._good, strict=True)
        self._events, self._payloads, self._good = [], [], []
        for event, payload, lineage in rows:
            reason = _unstorable(event)
            if reason is None:
                self._events.append(event)
                self._payloads.append(payload)
                self._good.append(lineage)
            else:
                self._bad.append((CONTRACT_VIOLATION, reason, payload))
                self._bad_lineage.append(lineage)


def _unstorable(event: dict) -> str | None:
    for name, type_ in EVENT_FIELDS:
        try:
            pa.array([event.get(name)], type_)
        except (pa.ArrowInvalid, OverflowError, TypeError, ValueError) as exc:
            return f"{name} cannot be stored as {type_}: {exc}"
    try:
        pa.array([event["event_time"]], pa.string()).cast(UTC_US)
    except (pa.ArrowInvalid, ValueError) as exc:
        return f"event_time cannot be stored as a timestamp: {exc}"
    return None
