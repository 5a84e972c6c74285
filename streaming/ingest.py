"""Kafka → `bronze.events` (+ `bronze.events_dead_letter`), exactly once.

How exactly-once works (the kafka-delta-ingest design):
- Each Delta commit carries, next to its rows, one app transaction per topic-partition in the
  batch: app id `<topic>-<partition>`, version = the last offset written. The offsets live in the
  table and change only with the rows they describe.
- On start and on every rebalance the ingester seeks each assigned partition to the offset after
  the one recorded in `bronze.events`. Broker-side group offsets are committed too, but only so
  that the usual lag tools show something; nothing reads them back.
- A commit is made against the table snapshot the offsets were read from. If another process
  committed the same partition since (a zombie after a rebalance), Delta rejects the commit
  (concurrent transaction) and this process drops its batch and seeks again.
- Dead letters go to their own table first, with their own app transactions; rows at or below
  that table's recorded offset are skipped, so a crash between the two commits re-reads the batch
  without writing its dead letters twice.
So a crash before the write, during it (parquet files written, not committed: orphans that vacuum
removes) or after the commit loses nothing and duplicates nothing.

A broker that lost or recreated the topic (an embedded broker keeping topics in memory restarts,
a topic is deleted and created again, retention deleted what was never read) is detected, never
skipped over: every commit also records a fingerprint of the topic's id, and before reading, the
ingester compares it with the broker's, and each partition's recorded position with the
broker's log start and end. On a mismatch it stops with `TopicReset`, naming the partitions and
the recovery command (`reset_offsets`, which records the gap in `bronze.events_offset_resets`).

Run modes, one code path: `run(follow=False)` ingests what is available and stops (the Dagster
asset); `run(follow=True)` keeps going until stopped (`lakehouse ingest --follow`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import resource
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from lakehouse.core.kafka import client_config, topic_id
from lakehouse.core.lake import Lake, open_table
from streaming.records import (
    DEAD_LETTER_SCHEMA,
    EVENTS_PARTITION_BY,
    EVENTS_SCHEMA,
    BatchBuilder,
)

EVENTS_TABLE = "bronze.events"
DEAD_LETTER_TABLE = "bronze.events_dead_letter"
RESETS_TABLE = "bronze.events_offset_resets"


def recovery_command(topic: str) -> str:
    """The command that starts a new epoch after the broker lost or recreated `topic`."""
    return f"lakehouse ingest --topic {topic} --reset-offsets --i-know-data-may-be-missing"


class TopicNotFound(RuntimeError):
    """The topic to ingest does not exist on the brokers."""


class TopicReset(RuntimeError):
    """The broker's topic is not the one bronze recorded offsets of: it was recreated, or its
    log ends before (or starts after) the recorded positions."""

    def __init__(self, topic: str, problems: list[str]):
        self.topic = topic
        self.problems = problems
        super().__init__(
            f"topic {topic!r} on the broker is not the one bronze.events was ingested from: "
            + "; ".join(problems)
            + ". The broker lost or recreated the topic (an embedded broker with memory:// "
            "storage forgets its topics when it restarts), so messages may be missing. Nothing "
            "was ingested. To go on from the topic as it is now, run "
            f"`{recovery_command(topic)}` (it records the gap in {RESETS_TABLE})."
        )


def fingerprint(topic_id: str) -> int:
    """A topic id as a non-negative 63-bit number: what a Delta app transaction can hold."""
    return int.from_bytes(hashlib.blake2b(topic_id.encode(), digest_size=8).digest()) >> 1


def identity_app_id(topic: str) -> str:
    """Delta app transaction id holding the fingerprint of the topic's id."""
    return f"{topic}#topic-id"


def position_problems(
    next_offsets: dict[int, int], watermarks: dict[int, tuple[int, int]]
) -> list[str]:
    """What is wrong with reading each partition from `next_offsets` (the offset after the last
    one recorded; 0 when none) given the broker's (log start, log end): a log that ends before
    the recorded position was truncated or recreated; one that starts after it lost messages
    never read."""
    problems = []
    for partition, next_offset in sorted(next_offsets.items()):
        low, high = watermarks.get(partition, (-1, -1))
        if high >= 0 and high < next_offset:
            problems.append(
                f"partition {partition}: bronze recorded offsets up to {next_offset - 1:,} "
                f"but the broker's log ends at {high:,}"
            )
        elif low > next_offset:
            problems.append(
                f"partition {partition}: the broker's log starts at {low:,}, after the next "
                f"offset to ingest {next_offset:,} ({low - next_offset:,} messages gone)"
            )
    return problems


def default_group(topic: str) -> str:
    """The consumer group of a topic's bronze ingestion: one per topic, so members ingesting
    different topics never wait on each other's rebalances."""
    return f"lakehouse-bronze-{topic}"


def app_id(topic: str, partition: int) -> str:
    """Delta app transaction id holding a partition's last ingested offset."""
    return f"{topic}-{partition}"


@dataclass(frozen=True)
class IngestOptions:
    topic: str
    group_id: str = ""  # default: default_group(topic)
    batch_max_events: int = 50_000  # flush when a batch holds this many messages ...
    batch_max_seconds: float = 2.0  # ... or when its first message is this old ...
    caught_up_seconds: float = 0.25  # ... or this old once every partition is drained
    session_timeout_ms: int = 6000  # tansu takes about half of it to complete a group join
    max_events: int | None = None  # bounded runs: stop after this many messages
    max_seconds: float | None = None  # bounded runs: stop after this long
    assignment_timeout: float = 30.0  # bounded runs: give up when no partition is assigned

    def __post_init__(self) -> None:
        if not self.group_id:
            object.__setattr__(self, "group_id", default_group(self.topic))
        if self.batch_max_events < 1:
            raise ValueError(f"batch_max_events must be >= 1, got {self.batch_max_events}")
        if self.batch_max_seconds <= 0:
            raise ValueError(f"batch_max_seconds must be > 0, got {self.batch_max_seconds}")


@dataclass
class IngestReport:
    topic: str
    group_id: str
    messages: int = 0  # consumed (re-reads after a rebalance or conflict included)
    events_written: int = 0
    dead_letters_written: int = 0
    batches: int = 0
    conflicts: int = 0  # commits refused because another process had written the partition
    rebalances: int = 0
    seconds: float = 0.0
    joined_after: float | None = None  # seconds until the group gave this member partitions
    events_per_second: float = 0.0  # messages per second once partitions were assigned
    peak_rss_mb: float = 0.0
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset to read
    lag: dict[int, int] = field(default_factory=dict)  # partition -> messages behind
    events_version: int | None = None
    dead_letter_version: int | None = None
    last_batch_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BronzeEventTables:
    """The two bronze tables and the offsets recorded in them."""

    def __init__(self, lake: Lake):
        self.options = dict(lake.options)
        self.events_uri = lake.table_uri(EVENTS_TABLE)
        self.dead_letter_uri = lake.table_uri(DEAD_LETTER_TABLE)
        self.events = self._create(self.events_uri, EVENTS_SCHEMA, EVENTS_PARTITION_BY)
        self.dead_letter = self._create(self.dead_letter_uri, DEAD_LETTER_SCHEMA, None)

    def _create(self, uri: str, schema: Any, partition_by: list[str] | None) -> DeltaTable:
        try:
            return DeltaTable.create(
                uri,
                schema,
                mode="ignore",
                partition_by=partition_by,
                storage_options=self.options or None,
            )
        except Exception:  # noqa: BLE001 - another ingester created it a moment ago
            table = open_table(uri, self.options)
            if table is None:
                raise
            return table

    def reload(self) -> None:
        """Read the latest snapshots; their offsets are what the next commits build on."""
        self.events = DeltaTable(self.events_uri, storage_options=self.options or None)
        self.dead_letter = DeltaTable(self.dead_letter_uri, storage_options=self.options or None)

    @staticmethod
    def offset(table: DeltaTable, topic: str, partition: int) -> int:
        """Last offset of the partition recorded in the table, -1 when none."""
        version = table.transaction_version(app_id(topic, partition))
        return -1 if version is None else version

    @staticmethod
    def recorded_fingerprint(table: DeltaTable, topic: str) -> int | None:
        """The fingerprint of the topic id the table's offsets belong to (None: not recorded)."""
        return table.transaction_version(identity_app_id(topic))

    def write(
        self,
        batch: BatchBuilder,
        batch_id: str,
        topic_id: str | None = None,
        log_bounds: dict[int, tuple[int, int]] | None = None,
    ) -> tuple[int, int]:
        """Commit one batch: dead letters first, then events. Returns rows written to each.
        The topic's id and each partition's (log start, log end) as last seen go into the
        commit's metadata, next to the offsets."""
        topic = batch.topic
        now = dt.datetime.now(dt.UTC)
        events, dead = batch.tables(batch_id, now)
        last = batch.last_offsets
        metadata = {
            "batch_id": batch_id,
            "ingester": f"{socket.gethostname()}:{os.getpid()}",
            "offsets": json.dumps(last),
            **({"topic_id": topic_id} if topic_id else {}),
            **({"log_bounds": json.dumps(log_bounds)} if log_bounds else {}),
        }
        identity = [Transaction(identity_app_id(topic), fingerprint(topic_id))] if topic_id else []
        # The dead-letter table can be ahead of bronze.events (a crash between the two
        # commits): skip what it already holds, and never move its offsets backwards.
        recorded = {p: self.offset(self.dead_letter, topic, p) for p in last}
        floor = [recorded[p] for p in dead.column("kafka_partition").to_pylist()]
        dead = dead.filter(pc.greater(dead.column("kafka_offset"), pa.array(floor, pa.int64())))
        if dead.num_rows:
            write_deltalake(
                self.dead_letter,
                dead,
                mode="append",
                storage_options=self.options or None,
                commit_properties=CommitProperties(
                    custom_metadata=metadata,
                    app_transactions=_transactions(topic, last, at_least=recorded) + identity,
                ),
            )
        # Always commit events, even with no rows: the offsets must advance with every batch.
        write_deltalake(
            self.events,
            events,
            mode="append",
            partition_by=EVENTS_PARTITION_BY,
            storage_options=self.options or None,
            commit_properties=CommitProperties(
                custom_metadata=metadata, app_transactions=_transactions(topic, last) + identity
            ),
        )
        return events.num_rows, dead.num_rows


def _transactions(
    topic: str, last: dict[int, int], at_least: dict[int, int] | None = None
) -> list[Transaction]:
    floor = at_least or {}
    return [Transaction(app_id(topic, p), max(o, floor.get(p, -1))) for p, o in last.items()]


class Ingester:
    """One consumer-group member moving the topic into the bronze tables."""

    def __init__(
        self,
        lake: Lake,
        bootstrap_servers: str,
        options: IngestOptions,
        on_batch: Callable[[IngestReport], None] = lambda _: None,
    ):
        self.bootstrap_servers = bootstrap_servers
        self.options = options
        self.on_batch = on_batch
        self.lake = lake
        self.tables = BronzeEventTables(lake)
        self.drained_at: float | None = None  # when every assigned partition was drained
        self.others_checked_at = 0.0
        self.report = IngestReport(topic=options.topic, group_id=options.group_id)
        self.batch = BatchBuilder(options.topic)
        self.batch_started: float | None = None
        self.assigned: set[int] = set()
        self.at_end: dict[int, bool] = {}
        self.stop_requested = False
        self.joined_at: float | None = None
        self.topic_id: str | None = None
        # partition -> the recorded next offset, until the broker's log bounds confirm it
        self.unverified: dict[int, int] = {}
        self.consumer = Consumer(
            client_config(
                bootstrap_servers,
                **{
                    "group.id": options.group_id,
                    "client.id": f"bronze-ingester-{socket.gethostname()}-{os.getpid()}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    # a recorded position outside the log is an error, never a silent jump
                    "auto.offset.reset": "error",
                    "session.timeout.ms": options.session_timeout_ms,
                    "heartbeat.interval.ms": max(options.session_timeout_ms // 6, 100),
                    "fetch.max.bytes": 64 * 1024 * 1024,
                    "queued.max.messages.kbytes": 64 * 1024,
                },
            )
        )

    # -- rebalance callbacks (run inside consume(), never during a write) ------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.report.rebalances += 1
        if self.joined_at is None and partitions:
            self.joined_at = time.monotonic()
        self.tables.reload()
        for tp in partitions:
            tp.offset = self._start_offset(tp.partition)
            if tp.offset >= 0:
                self.unverified[tp.partition] = tp.offset
        consumer.assign(partitions)
        self.assigned = {tp.partition for tp in partitions}
        self.at_end = dict.fromkeys(self.assigned, False)
        self.drained_at = None

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Unwritten messages are dropped: whoever owns the partitions next re-reads them from
        # the offsets in the table.
        self.batch = BatchBuilder(self.options.topic)
        self.batch_started = None
        self.assigned -= {tp.partition for tp in partitions}
        self.at_end = {p: self.at_end.get(p, False) for p in self.assigned}
        self.unverified = {p: o for p, o in self.unverified.items() if p in self.assigned}
        consumer.unassign()

    def _start_offset(self, partition: int) -> int:
        last = self.tables.offset(self.tables.events, self.options.topic, partition)
        return OFFSET_BEGINNING if last < 0 else last + 1

    def _seek_to_recorded(self) -> None:
        self.tables.reload()
        self.batch = BatchBuilder(self.options.topic)
        self.batch_started = None
        for partition in self.assigned:
            tp = TopicPartition(self.options.topic, partition, self._start_offset(partition))
            self.consumer.seek(tp)
            self.at_end[partition] = False

    # -- the loop -----------------------------------------------------------------------

    def run(self, follow: bool = False) -> IngestReport:
        """Ingest until stopped (follow) or until every assigned partition is drained."""
        opts = self.options
        started = time.monotonic()
        topics = self.consumer.list_topics(timeout=10).topics
        if opts.topic not in topics:
            raise TopicNotFound(
                f"topic {opts.topic!r} does not exist on {self.bootstrap_servers}"
                " (`lakehouse produce` creates it)"
            )
        try:
            self._check_topic_id()
            self.consumer.subscribe(
                [opts.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
            )
            while not self.stop_requested:
                if not follow and self._bound_reached(started):
                    break
                room = opts.batch_max_events - len(self.batch)
                self._take(self.consumer.consume(num_messages=min(room, 10_000), timeout=0.1))
                if self.unverified:
                    self._check_positions()
                if self._batch_due():
                    self._flush()
                if not follow and self._drained() and not self._others_pending():
                    break
            if len(self.batch):
                self._flush()
        finally:
            self.consumer.close()
            self._finish(started)
        return self.report

    def request_stop(self, *_: Any) -> None:
        self.stop_requested = True

    def _check_topic_id(self) -> None:
        """Stop before reading when the broker's topic is not the one the offsets belong to."""
        self.topic_id = topic_id(self.bootstrap_servers, self.options.topic)
        problems = _identity_problems(self.tables.events, self.options.topic, self.topic_id)
        if problems:
            raise TopicReset(self.options.topic, problems)

    def _out_of_range(self, partition: int, error: str) -> None:
        """The broker refused the recorded position (Apache Kafka): say where its log is."""
        tp = TopicPartition(self.options.topic, partition)
        bounds = self.consumer.get_watermark_offsets(tp, timeout=10)
        start = self._start_offset(partition)
        problems = position_problems({partition: start}, {partition: bounds}) if start >= 0 else []
        raise TopicReset(self.options.topic, problems or [f"partition {partition}: {error}"])

    def _check_positions(self) -> None:
        """Compare recorded positions with the log bounds of the first fetch of each partition
        (cached watermarks: the embedded broker under-reports them in offset queries)."""
        bounds = self._fetched_bounds(self.unverified)
        checked = {p: self.unverified.pop(p) for p in bounds}
        problems = position_problems(checked, bounds)
        if problems:
            raise TopicReset(self.options.topic, problems)

    def _take(self, messages: list[Any]) -> None:
        """Add consumed messages to the batch (the hot loop: keep it lean)."""
        add, assigned, at_end = self.batch.add, self.assigned, self.at_end
        taken = 0
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end[msg.partition()] = True
                elif error.code() == KafkaError._AUTO_OFFSET_RESET:
                    self._out_of_range(msg.partition(), error.str())
                elif error.fatal() or error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise KafkaException(error)
                continue  # transient (broker restart, rebalance): librdkafka retries
            partition = msg.partition()
            if partition not in assigned:
                continue
            at_end[partition] = False
            add(partition, msg.offset(), msg.key(), msg.value(), msg.timestamp()[1])
            taken += 1
        if taken and self.batch_started is None:
            self.batch_started = time.monotonic()
        self.report.messages += taken

    def _batch_due(self) -> bool:
        if not len(self.batch):
            return False
        age = time.monotonic() - self.batch_started
        caught_up = all(self.at_end.get(p) for p in self.assigned)
        return (
            len(self.batch) >= self.options.batch_max_events
            or age >= self.options.batch_max_seconds
            or (caught_up and age >= self.options.caught_up_seconds)
        )

    def _bound_reached(self, started: float) -> bool:
        opts = self.options
        elapsed = time.monotonic() - started
        if opts.max_seconds is not None and elapsed >= opts.max_seconds:
            return True
        if opts.max_events is not None and self.report.messages >= opts.max_events:
            return True
        return not self.assigned and elapsed >= opts.assignment_timeout

    def _others_pending(self) -> bool:
        """Whether partitions this member was not given still hold unread messages, while a
        rebalance may yet hand them over: a member that died (killed, crashed) keeps its
        partitions until its session times out. Checked once a second for at most two session
        timeouts after this member drained its own; then they belong to a live member."""
        now = time.monotonic()
        self.drained_at = self.drained_at or now
        grace = 2 * self.options.session_timeout_ms / 1000
        if now - self.drained_at > grace:
            return False
        if now - self.others_checked_at < 1.0:
            return True
        self.others_checked_at = now
        try:
            status = ingest_status(self.lake, self.bootstrap_servers, self.options.topic, timeout=5)
        except KafkaException:
            return False  # the broker went away: nothing more to drain now
        return any(
            row["partition"] not in self.assigned and (row["lag"] or 0) > 0
            for row in status["partitions"]
        )

    def _drained(self) -> bool:
        return (
            bool(self.assigned)
            and not len(self.batch)
            and all(self.at_end.get(p) for p in self.assigned)
        )

    def _flush(self) -> None:
        batch_id = uuid.uuid4().hex
        try:
            events, dead = self.tables.write(
                self.batch, batch_id, self.topic_id, self._fetched_bounds(self.batch.last_offsets)
            )
        except CommitFailedError as exc:
            if "concurrent" not in str(exc).lower():
                raise
            # Someone else wrote one of these partitions: they own it now. Start again from
            # what the table says; the coming rebalance will sort out ownership.
            self.report.conflicts += 1
            self._seek_to_recorded()
            return
        offsets = dict(self.batch.last_offsets)
        self.report.events_written += events
        self.report.dead_letters_written += dead
        self.report.batches += 1
        self.report.last_batch_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.report.offsets.update({p: last + 1 for p, last in offsets.items()})
        self.batch = BatchBuilder(self.options.topic)
        self.batch_started = None
        self._commit_group_offsets(offsets)
        self._update_lag()
        self.on_batch(self.report)

    def _fetched_bounds(self, partitions: dict[int, int]) -> dict[int, tuple[int, int]]:
        """(log start, log end) of the partitions that a fetch answered already (cached
        watermarks: the embedded broker under-reports them in offset queries)."""
        bounds = {}
        for partition in partitions:
            tp = TopicPartition(self.options.topic, partition)
            low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                bounds[partition] = (low, high)
        return bounds

    def _commit_group_offsets(self, offsets: dict[int, int]) -> None:
        """Informational only (lag dashboards); correctness comes from the Delta offsets."""
        tps = [TopicPartition(self.options.topic, p, last + 1) for p, last in offsets.items()]
        with contextlib.suppress(KafkaException):  # mid-rebalance: the next batch commits
            self.consumer.commit(offsets=tps, asynchronous=True)

    def _update_lag(self) -> None:
        # Cached watermarks come from fetch responses: right even where offset queries are not.
        for partition, next_offset in self.report.offsets.items():
            tp = TopicPartition(self.options.topic, partition)
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                self.report.lag[partition] = max(high - next_offset, 0)

    def _finish(self, started: float) -> None:
        report = self.report
        report.seconds = round(time.monotonic() - started, 2)
        if self.joined_at is not None:
            report.joined_after = round(self.joined_at - started, 2)
            working = time.monotonic() - self.joined_at
            report.events_per_second = round(report.messages / max(working, 1e-9), 1)
        report.peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        report.events_version = self.tables.events.version()
        report.dead_letter_version = self.tables.dead_letter.version()


def ingest(
    lake: Lake,
    bootstrap_servers: str,
    options: IngestOptions,
    *,
    follow: bool = False,
    on_batch: Callable[[IngestReport], None] = lambda _: None,
    status_file: Path | None = None,
) -> IngestReport:
    """Run one ingester; in follow mode SIGINT/SIGTERM stop it after the current batch."""
    ingester = Ingester(
        lake, bootstrap_servers, options, on_batch=_with_status(on_batch, status_file)
    )
    if follow:
        signal.signal(signal.SIGINT, ingester.request_stop)
        signal.signal(signal.SIGTERM, ingester.request_stop)
    try:
        return ingester.run(follow=follow)
    finally:
        if status_file is not None:
            status_file.unlink(missing_ok=True)


def _with_status(
    on_batch: Callable[[IngestReport], None], status_file: Path | None
) -> Callable[[IngestReport], None]:
    if status_file is None:
        return on_batch

    def both(report: IngestReport) -> None:
        status = {"pid": os.getpid(), "updated_at": time.time(), **report.to_dict()}
        status_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        tmp.replace(status_file)
        on_batch(report)

    return both


def _peek_consumer(bootstrap_servers: str) -> Consumer:
    return Consumer(
        client_config(
            bootstrap_servers,
            **{
                "group.id": f"lakehouse-status-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "error",
            },
        )
    )


def _partitions(peek: Consumer, bootstrap_servers: str, topic: str, timeout: float) -> list[int]:
    metadata = peek.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise TopicNotFound(f"topic {topic!r} does not exist on {bootstrap_servers}")
    return sorted(metadata.partitions)


def _log_bounds(
    peek: Consumer, topic: str, start: dict[int, int], timeout: float
) -> dict[int, tuple[int, int]]:
    """Each partition's (log start, log end), from a short fetch at `start` (the embedded broker
    under-reports the log end in offset queries; fetch responses carry the right one). Waits up
    to `timeout` seconds for a first response of every partition."""
    peek.assign([TopicPartition(topic, p, max(o, 0)) for p, o in start.items()])
    pending = set(start)
    queried: dict[int, tuple[int, int]] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for msg in peek.consume(num_messages=len(start) * 10, timeout=0.2):
            error = msg.error()
            if error is not None and error.code() == KafkaError._AUTO_OFFSET_RESET:
                # out of range on Apache Kafka, whose offset queries are right: ask
                tp = TopicPartition(topic, msg.partition())
                queried[msg.partition()] = peek.get_watermark_offsets(tp, timeout=timeout)
            pending.discard(msg.partition())
        pending = {
            p
            for p in pending
            if peek.get_watermark_offsets(TopicPartition(topic, p), cached=True)[1] < 0
        }
    return {
        p: queried.get(p) or peek.get_watermark_offsets(TopicPartition(topic, p), cached=True)
        for p in start
    }


def ingest_status(
    lake: Lake,
    bootstrap_servers: str,
    topic: str,
    *,
    run_dir: Path | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Offsets recorded in bronze, the broker's log start and end and the lag, per partition,
    and the `problems` that stop ingestion (a recreated topic, a log that ends before the
    recorded offsets): with problems, the lag is unknown (None), never 0.

    `run_dir` is where `--follow` ingesters publish their progress (listed as followers)."""
    events = lake.open(EVENTS_TABLE)
    peek = _peek_consumer(bootstrap_servers)
    try:
        partitions = _partitions(peek, bootstrap_servers, topic, timeout)
        recorded = {
            p: (-1 if events is None else BronzeEventTables.offset(events, topic, p))
            for p in partitions
        }
        bounds = _log_bounds(peek, topic, {p: o + 1 for p, o in recorded.items()}, timeout)
    finally:
        peek.close()
    current_id = topic_id(bootstrap_servers, topic)
    problems = position_problems(
        {p: o + 1 for p, o in recorded.items() if o >= 0}, bounds
    ) + _identity_problems(events, topic, current_id)
    rows = []
    for p in partitions:
        low, high = bounds[p]
        next_offset = recorded[p] + 1
        rows.append(
            {
                "partition": p,
                "next_offset": next_offset,
                "log_start": low if high >= 0 else None,
                "log_end": high if high >= 0 else None,
                "lag": max(high - next_offset, 0) if high >= 0 and not problems else None,
            }
        )
    return {
        "topic": topic,
        "topic_id": current_id,
        "events_table": lake.table_uri(EVENTS_TABLE),
        "events_version": None if events is None else events.version(),
        "partitions": rows,
        "total_lag": None if problems else sum(r["lag"] or 0 for r in rows),
        "problems": problems,
        "recovery": recovery_command(topic) if problems else None,
        "followers": [] if run_dir is None else live_followers(run_dir, topic),
    }


def _identity_problems(events: DeltaTable | None, topic: str, current: str | None) -> list[str]:
    """The topic id's problem, if the broker's is not the one bronze.events recorded."""
    recorded = None if events is None else BronzeEventTables.recorded_fingerprint(events, topic)
    if current and recorded is not None and recorded != fingerprint(current):
        return [f"its id is now {current}, not the one bronze.events recorded"]
    return []


RESETS_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("kafka_partition", pa.int32()),
        ("recorded_next_offset", pa.int64()),
        ("new_next_offset", pa.int64()),
        ("topic_id", pa.string()),
        ("reason", pa.string()),
        ("reset_at", pa.timestamp("us", tz="UTC")),
        ("reset_by", pa.string()),
    ]
)


def reset_offsets(
    lake: Lake, bootstrap_servers: str, topic: str, *, timeout: float = 10.0
) -> dict[str, Any]:
    """Start a new epoch after the broker lost or recreated the topic: every partition is read
    again from the broker's log start. One row per partition in `bronze.events_offset_resets`
    records the gap (the recorded and the new position, and why). Refuses (ValueError) when
    nothing is wrong: moving healthy offsets would skip or repeat messages."""
    status = ingest_status(lake, bootstrap_servers, topic, timeout=timeout)
    if not status["problems"]:
        raise ValueError(
            f"nothing to reset: bronze's offsets of {topic!r} match the broker's topic "
            f"(total lag {status['total_lag']:,})"
        )
    tables = BronzeEventTables(lake)
    now = dt.datetime.now(dt.UTC)
    reason = "; ".join(status["problems"])
    moved = {r["partition"]: (r["next_offset"], r["log_start"] or 0) for r in status["partitions"]}
    rows = pa.Table.from_pylist(
        [
            {
                "topic": topic,
                "kafka_partition": p,
                "recorded_next_offset": old,
                "new_next_offset": new,
                "topic_id": status["topic_id"],
                "reason": reason,
                "reset_at": now,
                "reset_by": f"{socket.gethostname()}:{os.getpid()}",
            }
            for p, (old, new) in moved.items()
        ],
        schema=RESETS_SCHEMA,
    )
    write_deltalake(
        lake.table_uri(RESETS_TABLE), rows, mode="append", storage_options=tables.options or None
    )
    # both tables move back to the log start (the dead letters' floor would otherwise skip
    # the new epoch's bad messages); Delta app transaction versions may go down
    last = {p: new - 1 for p, (_, new) in moved.items()}
    identity = (
        [Transaction(identity_app_id(topic), fingerprint(status["topic_id"]))]
        if status["topic_id"]
        else []
    )
    properties = CommitProperties(
        custom_metadata={"offsets_reset": json.dumps(moved), "reason": reason},
        app_transactions=_transactions(topic, last) + identity,
    )
    for table, schema, partition_by in (
        (tables.dead_letter, DEAD_LETTER_SCHEMA, None),
        (tables.events, EVENTS_SCHEMA, EVENTS_PARTITION_BY),
    ):
        write_deltalake(
            table,
            schema.empty_table(),
            mode="append",
            partition_by=partition_by,
            storage_options=tables.options or None,
            commit_properties=properties,
        )
    return {"topic": topic, "reason": reason, "partitions": moved, "topic_id": status["topic_id"]}


def status_path(run_dir: Path, topic: str) -> Path:
    """Where this `lakehouse ingest --follow` process publishes its progress."""
    return run_dir / f"ingest-{topic}-{os.getpid()}.json"


def live_followers(run_dir: Path, topic: str) -> list[dict[str, Any]]:
    """Progress of the `--follow` ingesters of a topic that are still running on this host."""
    followers = []
    for path in sorted(run_dir.glob(f"ingest-{topic}-*.json")):
        try:
            status = json.loads(path.read_text())
            os.kill(status["pid"], 0)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # its process is gone
            continue
        followers.append(status)
    return followers
