"""`lakehouse produce`: the simulated clickstream onto a Kafka topic, with fault injection.

Events are keyed by session (or customer), so a session's events stay in order in one partition.
Faults never remove a good event: duplicates re-send an event's exact bytes, late events are held
back and sent after newer ones, malformed records are *extra* messages (a corrupted copy with a
fresh id, or undecodable bytes), and drift adds a field and bumps the minor schema version
(DRIFT_VERSION).
Orphans, future-dated events and negative quantities are extra copies with a fresh id, too:
contract-valid events that reference unknown products or customers or carry an event_time days
ahead of the wall clock, and cart or purchase events with a quantity below 1 (a dead letter).
Every acknowledged message can be logged (partition, offset, kind, event id) so a consumer's
result can be checked against what the broker accepted.
"""

from __future__ import annotations

import csv
import heapq
import resource
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson
from confluent_kafka import KafkaException, Producer

from lakehouse.core.kafka import EVENTS_TOPIC_PARTITIONS, client_config, ensure_topic
from streaming.contract import PRODUCT_EVENTS, SCHEMA_VERSION

MALFORMED_KINDS = ("bad_json", "missing_field", "wrong_type", "unknown_event_type", "undecodable")
ORPHAN_ID_BASE = 900_000_000  # no product or customer has an id this high
QUANTITY_EVENTS = frozenset({"add_to_cart", "purchase"})
DAY_MS = 86_400_000
# How long a message may wait for others to share its produce request. On the embedded broker's
# object storage every request is object writes: the live stream (20 events/s) sent at 20 ms
# kept SeaweedFS at 94 % of a core and consumers up to 2.2 s behind (p95); at 1 s, 26 % and
# 0.65-0.92 s (docs/serving.md). The live stream is for watching, so a second is no loss.
LINGER_MS, LIVE_LINGER_MS = 20, 1000
# what a producer a minor version ahead sends (--drift): consumers keep its unknown fields
DRIFT_VERSION = f"1.{int(SCHEMA_VERSION.split('.')[1]) + 1}"

Message = tuple[bytes, bytes, str, str]  # key, value, kind, event_id
Extra = tuple[bytes, str, str]  # value, kind, event_id of an extra message
Maker = Callable[[np.random.Generator, dict], Extra | None]


@dataclass(frozen=True)
class Faults:
    duplicates: float = 0.0  # share of events sent twice (same event_id, same bytes)
    late: float = 0.0  # share of events held back and sent after newer ones
    malformed: float = 0.0  # extra broken messages, as a share of events
    drift: float = 0.0  # share of events with an unknown extra field and the next minor version
    orphans: float = 0.0  # extra copies with a product_id/customer_id no master record has
    future: float = 0.0  # extra copies with an event_time 1-30 days after their send time
    negative_quantities: float = 0.0  # extra cart/purchase copies with quantity < 0
    seed: int = 7

    def __post_init__(self) -> None:
        for name in (
            "duplicates",
            "late",
            "malformed",
            "drift",
            "orphans",
            "future",
            "negative_quantities",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 0.5:
                option = name.replace("_", "-")
                raise ValueError(f"--{option} must be a share between 0 and 0.5, got {value}")


@dataclass
class ProduceReport:
    topic: str
    events: int = 0  # distinct good events sent (the stream a consumer must reproduce)
    messages: int = 0  # everything handed to the producer, faults included
    acknowledged: int = 0
    failed: int = 0
    kinds: Counter = field(default_factory=Counter)
    first_event_time: str | None = None
    last_event_time: str | None = None
    seconds: float = 0.0
    events_per_second: float = 0.0
    peak_rss_mb: float = 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "kinds": dict(self.kinds)}


class FaultInjector:
    """Turns the stream of good events into the stream of messages, faults included."""

    def __init__(self, faults: Faults):
        self.faults = faults
        # The stream's clock: the simulated time at which the message being yielded is sent.
        # It becomes the Kafka timestamp, so a consumer measures lateness (and events from the
        # future) against the time an event was sent, in replays as in live traffic.
        self.now_ms = 0
        self.rng = np.random.default_rng(faults.seed)
        # The extra copies (orphans, future, negative quantities) draw from a stream of their own,
        # so switching them on leaves every other message, fault or not, exactly as it was.
        self.extra_rng = np.random.default_rng([faults.seed, 1])
        self.makers: tuple[tuple[float, np.random.Generator, Maker], ...] = tuple(
            (share, rng, make)
            for share, rng, make in (
                (faults.malformed, self.rng, self._malformed),
                (faults.orphans, self.extra_rng, self._orphan),
                (faults.future, self.extra_rng, self._future),
                (faults.negative_quantities, self.extra_rng, self._negative_quantity),
            )
            if share  # a knob that is off draws no random numbers
        )
        self.held: list[tuple[int, int, bytes, bytes, str, str]] = []  # heap by release time
        self.counter = 0

    def messages(self, stream: Iterator[tuple[bytes, dict, int]]) -> Iterator[Message]:
        """(key, value, kind, event_id); kinds: valid, duplicate, late, drift, malformed_*,
        orphan_product, orphan_customer, future_time, negative_quantity."""
        f, rng = self.faults, self.rng
        for key, record, event_ms in stream:
            self.now_ms = max(self.now_ms, event_ms)
            yield from self._release(event_ms)
            kind = "valid"
            if f.drift and rng.random() < f.drift:
                record = {**record, "schema_version": DRIFT_VERSION, "app_version": "5.2.1"}  # noqa: PLW2901
                kind = "drift"
            value = orjson.dumps(record)
            event_id = record["event_id"]
            if f.late and rng.random() < f.late:
                # Mostly minutes late; one in ten by up to two days (past any lateness window).
                delay = (
                    rng.exponential(20 * 60_000)
                    if rng.random() < 0.9
                    else rng.uniform(6 * 3_600_000, 48 * 3_600_000)
                )
                self._hold(event_ms + int(delay), key, value, "late", event_id)
            else:
                yield key, value, kind, event_id
            if f.duplicates and rng.random() < f.duplicates:
                self._hold(
                    event_ms + int(rng.uniform(0, 300_000)), key, value, "duplicate", event_id
                )
            yield from self._extras(key, record)
        while self.held:
            release_ms, _, key, value, kind, event_id = heapq.heappop(self.held)
            self.now_ms = max(self.now_ms, release_ms)
            yield key, value, kind, event_id

    def _hold(self, release_ms: int, key: bytes, value: bytes, kind: str, event_id: str) -> None:
        self.counter += 1
        heapq.heappush(self.held, (release_ms, self.counter, key, value, kind, event_id))

    def _release(self, now_ms: int) -> Iterator[Message]:
        while self.held and self.held[0][0] <= now_ms:
            _, _, key, value, kind, event_id = heapq.heappop(self.held)
            yield key, value, kind, event_id

    def _extras(self, key: bytes, record: dict) -> Iterator[Message]:
        """The extra messages for one good event, each a copy under a fresh event_id (or, for
        one malformed kind, undecodable bytes); a maker returns None when the event has nothing
        its fault applies to."""
        for share, rng, make in self.makers:
            if rng.random() < share:
                extra = make(rng, record)
                if extra is not None:
                    value, kind, event_id = extra
                    yield key, value, kind, event_id

    @staticmethod
    def _copy(rng: np.random.Generator, record: dict, **changes) -> dict:
        """A copy of the event under a fresh (seeded) event_id, so it is not a duplicate."""
        return {**record, "event_id": str(uuid.UUID(bytes=rng.bytes(16), version=4)), **changes}

    def _orphan(self, rng: np.random.Generator, record: dict) -> Extra | None:
        orphan_id = ORPHAN_ID_BASE + 1 + int(rng.integers(1_000))
        if record["event_type"] in PRODUCT_EVENTS or record.get("product_id") is not None:
            copy, kind = self._copy(rng, record, product_id=orphan_id), "orphan_product"
        elif record.get("customer_id") is not None:
            copy, kind = self._copy(rng, record, customer_id=orphan_id), "orphan_customer"
        else:
            return None  # an anonymous page view or search references no master data
        return orjson.dumps(copy), kind, copy["event_id"]

    def _future(self, rng: np.random.Generator, record: dict) -> Extra:
        event_ms = self.now_ms + int(rng.uniform(DAY_MS, 30 * DAY_MS))
        # Formatted like generator.events: ISO 8601 UTC, milliseconds, "Z".
        event_time = np.datetime_as_string(np.datetime64(event_ms, "ms"), unit="ms") + "Z"
        copy = self._copy(rng, record, event_time=event_time)
        return orjson.dumps(copy), "future_time", copy["event_id"]

    def _negative_quantity(self, rng: np.random.Generator, record: dict) -> Extra | None:
        if record["event_type"] not in QUANTITY_EVENTS:
            return None
        copy = self._copy(rng, record, quantity=-(1 + int(rng.integers(5))))
        return orjson.dumps(copy), "negative_quantity", copy["event_id"]

    def _malformed(self, rng: np.random.Generator, record: dict) -> Extra:
        kind = MALFORMED_KINDS[int(rng.integers(len(MALFORMED_KINDS)))]
        broken = self._copy(rng, record)
        if kind == "bad_json":
            value = orjson.dumps(broken)[:-7] + b'",,}'
        elif kind == "missing_field":
            broken.pop(["event_time", "event_type", "session_id", "device"][int(rng.integers(4))])
            value = orjson.dumps(broken)
        elif kind == "wrong_type":
            broken["customer_id" if broken.get("customer_id") else "event_time"] = [
                "not",
                "a",
                "scalar",
            ]
            value = orjson.dumps(broken)
        elif kind == "unknown_event_type":
            broken["event_type"] = "wishlist_add"
            value = orjson.dumps(broken)
        else:  # undecodable: not UTF-8 at all
            value = b"\xff\xfe\x00" + rng.bytes(24)
        return value, f"malformed_{kind}", broken["event_id"]


class AckLog:
    """CSV of acknowledged messages: partition, offset, kind, event_id."""

    def __init__(self, path: Path | None):
        self.handle = open(path, "w", newline="") if path else None  # noqa: SIM115
        self.writer = csv.writer(self.handle) if self.handle else None
        if self.writer:
            self.writer.writerow(["partition", "offset", "kind", "event_id"])

    def write(self, partition: int, offset: int, kind: str, event_id: str) -> None:
        if self.writer:
            self.writer.writerow([partition, offset, kind, event_id])

    def close(self) -> None:
        if self.handle:
            self.handle.close()


def produce(
    bootstrap_servers: str,
    topic: str,
    stream: Iterator[tuple[bytes, dict, int]],
    *,
    faults: Faults = Faults(),
    rate: float = 0.0,
    max_events: int | None = None,
    duration: float | None = None,
    partitions: int = EVENTS_TOPIC_PARTITIONS,
    ack_log: Path | None = None,
    on_progress: Callable[[ProduceReport], None] = lambda _: None,
    linger_ms: int = LINGER_MS,
) -> ProduceReport:
    """Send the stream to Kafka; stop after max_events good events or duration seconds;
    `linger_ms` is how long a message may wait for others to share its produce request."""
    ensure_topic(bootstrap_servers, topic, partitions)
    producer = Producer(
        client_config(
            bootstrap_servers,
            **{
                "acks": "all",
                "enable.idempotence": True,
                "compression.type": "lz4",
                "linger.ms": linger_ms,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 200_000,
            },
        )
    )
    report = ProduceReport(topic=topic)
    acks = AckLog(ack_log)
    errors: list[str] = []

    def delivered(kind: str, event_id: str, err, msg) -> None:
        if err is not None:
            report.failed += 1
            if len(errors) < 5:
                errors.append(str(err))
            return
        report.acknowledged += 1
        acks.write(msg.partition(), msg.offset(), kind, event_id)

    started = time.monotonic()
    last_progress = started

    def limited() -> Iterator[tuple[bytes, dict, int]]:
        for item in stream:
            if max_events is not None and report.events >= max_events:
                return
            if duration is not None and time.monotonic() - started >= duration:
                return
            report.events += 1
            report.first_event_time = report.first_event_time or item[1]["event_time"]
            report.last_event_time = item[1]["event_time"]
            yield item

    try:
        injector = FaultInjector(faults)
        for key, value, kind, event_id in injector.messages(limited()):
            report.kinds[kind] += 1
            report.messages += 1
            while True:
                try:
                    producer.produce(
                        topic,
                        value=value,
                        key=key,
                        timestamp=injector.now_ms,
                        on_delivery=lambda err, msg, k=kind, e=event_id: delivered(k, e, err, msg),
                    )
                    break
                except BufferError:
                    producer.poll(0.05)  # local queue full: let deliveries drain
            producer.poll(0)
            if rate > 0:
                ahead = report.messages / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            now = time.monotonic()
            if now - last_progress > 0.25:
                last_progress = now
                on_progress(report)
        remaining = producer.flush(60)
        if remaining:
            raise KafkaException(f"{remaining} messages not delivered within 60 s")
    finally:
        acks.close()
    report.seconds = round(time.monotonic() - started, 2)
    report.events_per_second = round(report.messages / max(report.seconds, 1e-9), 1)
    report.peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    on_progress(report)
    if report.failed:
        raise KafkaException(f"{report.failed} messages failed delivery, e.g. {errors}")
    return report
