"""`lakehouse produce`: the simulated clickstream onto a Kafka topic, with fault injection.

Events are keyed by session (or customer), so a session's events stay in order in one partition.
Faults never remove a good event: duplicates re-send an event's exact bytes, late events are held
back and sent after newer ones, malformed records are *extra* messages (a corrupted copy with a
fresh id, or undecodable bytes), and drift adds a field and bumps the minor schema version.
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

from generator.events import event_records, session_keys
from generator.simulate import Simulation
from generator.world import Scale, build_world
from lakehouse.kafka import client_config, ensure_topic

MALFORMED_KINDS = ("bad_json", "missing_field", "wrong_type", "unknown_event_type", "undecodable")


@dataclass(frozen=True)
class Faults:
    duplicates: float = 0.0  # share of events sent twice (same event_id, same bytes)
    late: float = 0.0  # share of events held back and sent after newer ones
    malformed: float = 0.0  # extra broken messages, as a share of events
    drift: float = 0.0  # share of events with an unknown extra field and schema_version 1.1
    seed: int = 7

    def __post_init__(self) -> None:
        for name in ("duplicates", "late", "malformed", "drift"):
            value = getattr(self, name)
            if not 0.0 <= value <= 0.5:
                raise ValueError(f"--{name} must be a share between 0 and 0.5, got {value}")


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


def simulated_messages(
    scale: Scale, first_day: int = 0, days: int | None = None, key_by: str = "session"
) -> Iterator[tuple[bytes, dict, int]]:
    """(key, event, event_time_ms) for the simulated days [first_day, first_day + days).

    Days before first_day are simulated but not emitted: the simulation is sequential."""
    world = build_world(scale)
    simulation = Simulation(world)
    last = scale.days if days is None else min(first_day + days, scale.days)
    for batch in simulation.days(last):
        if batch.day < first_day:
            continue
        keys = session_keys(batch)
        times = batch.events["event_time"].tolist()
        for i, record in enumerate(event_records(world, batch)):
            if key_by == "customer" and record["customer_id"] is not None:
                key = str(record["customer_id"]).encode()
            else:
                key = keys[i]
            yield key, record, times[i]


class FaultInjector:
    """Turns the stream of good events into the stream of messages, faults included."""

    def __init__(self, faults: Faults):
        self.faults = faults
        self.rng = np.random.default_rng(faults.seed)
        self.held: list[tuple[int, int, bytes, bytes, str, str]] = []  # heap by release time
        self.counter = 0

    def messages(
        self, stream: Iterator[tuple[bytes, dict, int]]
    ) -> Iterator[tuple[bytes, bytes, str, str]]:
        """(key, value, kind, event_id); kinds: valid, duplicate, late, drift, malformed_*."""
        f, rng = self.faults, self.rng
        for key, record, event_ms in stream:
            yield from self._release(event_ms)
            kind = "valid"
            if f.drift and rng.random() < f.drift:
                record = {**record, "schema_version": "1.1", "app_version": "5.2.1"}  # noqa: PLW2901
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
            if f.malformed and rng.random() < f.malformed:
                yield self._malformed(key, record)
        while self.held:
            _, _, key, value, kind, event_id = heapq.heappop(self.held)
            yield key, value, kind, event_id

    def _hold(self, release_ms: int, key: bytes, value: bytes, kind: str, event_id: str) -> None:
        self.counter += 1
        heapq.heappush(self.held, (release_ms, self.counter, key, value, kind, event_id))

    def _release(self, now_ms: int) -> Iterator[tuple[bytes, bytes, str, str]]:
        while self.held and self.held[0][0] <= now_ms:
            _, _, key, value, kind, event_id = heapq.heappop(self.held)
            yield key, value, kind, event_id

    def _malformed(self, key: bytes, record: dict) -> tuple[bytes, bytes, str, str]:
        kind = MALFORMED_KINDS[int(self.rng.integers(len(MALFORMED_KINDS)))]
        broken = {**record, "event_id": str(uuid.UUID(bytes=self.rng.bytes(16), version=4))}
        if kind == "bad_json":
            value = orjson.dumps(broken)[:-7] + b'",,}'
        elif kind == "missing_field":
            broken.pop(
                ["event_time", "event_type", "session_id", "device"][int(self.rng.integers(4))]
            )
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
            value = b"\xff\xfe\x00" + self.rng.bytes(24)
        return key, value, f"malformed_{kind}", broken["event_id"]


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
    partitions: int = 6,
    ack_log: Path | None = None,
    on_progress: Callable[[ProduceReport], None] = lambda _: None,
) -> ProduceReport:
    """Send the stream to Kafka; stop after max_events good events or duration seconds."""
    ensure_topic(bootstrap_servers, topic, partitions)
    producer = Producer(
        client_config(
            bootstrap_servers,
            **{
                "acks": "all",
                "enable.idempotence": True,
                "compression.type": "lz4",
                "linger.ms": 20,
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
        for key, value, kind, event_id in FaultInjector(faults).messages(limited()):
            report.kinds[kind] += 1
            report.messages += 1
            while True:
                try:
                    producer.produce(
                        topic,
                        value=value,
                        key=key,
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
