"""The stream processor (`lakehouse stream`): the clickstream into the online store, in about a
second, for the recommendation API and the live counters.

It reads every partition of the topic and keeps its position as the offsets of its own consumer
group (bronze ingestion keeps its offsets in the Delta log, so the two never interfere): one
process per group. It applies each batch of good events to Redis in one pipelined round trip
(streaming/online.py). Offsets are committed only after Redis has the batch, so a
crash replays it, and replays change nothing: the apply script skips event ids it has seen.
Messages that are not contract events are counted (`bad`, by reason) and skipped; they never
stop it, and bronze keeps them in its dead letter with the reason. Recommendation impressions
and clicks are what the API showed, not what a shopper did: counted (`not_activity`), not applied.

Built on confluent-kafka directly rather than a stream-processing framework (quixstreams, say):
the state lives in Redis, where the API reads it, not in a framework's local store, and the
whole job is decode → validate → one pipeline per batch, which the project's Kafka client
already does at the measured rate (`bench/stream_processor.py`).
"""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition

from lakehouse.core.kafka import client_config
from lakehouse.core.settings import mask_password
from streaming.contract import RECOMMENDATION_EVENTS
from streaming.online import STATS_KEY, OnlineStore
from streaming.records import classify

BATCH = 2_000  # messages per poll: one Redis round trip each
NOT_ACTIVITY = "not_activity"  # a recommendation event, counted beside the bad ones
REDIS_PATIENCE = 120.0  # seconds a batch waits for Redis to come back before the processor stops


@dataclass
class StreamReport:
    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    bad: int = 0
    bad_by_reason: dict[str, int] = field(default_factory=dict)
    not_activity: int = 0  # recommendation impressions and clicks
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StreamProcessor:
    """One consumer of the clickstream feeding the online store; `run` until stopped."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        group: str,
        store: OnlineStore,
        start: str = "latest",
        log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
    ) -> None:
        self.topic = topic
        self.store = store
        self.start = start
        self.log = log
        self.assigned = False  # positions known: what is produced from now on is seen
        self.consumer = Consumer(
            client_config(
                bootstrap_servers,
                **{
                    "group.id": group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": start,  # also where an out-of-range position goes
                    # librdkafka's fetch wait (500 ms) kept: at 50 ms tansu (s3 storage)
                    # answered none of the fetches of a backlog; tansu seems to answer a
                    # fetch only when the wait runs out, hence ~270 ms median latency
                },
            )
        )
        self.report = StreamReport()
        self.stop_requested = False
        # one batch at a time in Redis, applied on this thread while the next one is decoded
        self._applier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apply")
        self._pending: tuple | None = None

    def request_stop(self, *_: Any) -> None:
        self.stop_requested = True

    def run(
        self,
        max_seconds: float | None = None,
        on_batch: Callable[[StreamReport], None] = lambda _: None,
    ) -> StreamReport:
        started = time.monotonic()
        self._assign()
        try:
            while not self.stop_requested:
                if max_seconds is not None and time.monotonic() - started >= max_seconds:
                    break
                self.process(self._next_batch())
                self._heartbeat()
                on_batch(self.report)
            self.flush()
        finally:
            self.report.seconds = round(time.monotonic() - started, 3)
            self._applier.shutdown(wait=True)
            self.consumer.close()
        return self.report

    def _assign(self) -> None:
        """Take every partition of the topic, from the group's committed offsets (a new group
        from the end of the log or its start, as `start` says). Assigned, not subscribed: a
        tansu group join takes from seconds to minutes after a member leaves, and the offsets
        committed to the group are all that is needed to resume."""
        metadata = self.consumer.list_topics(self.topic, timeout=10)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            raise KafkaException(f"topic {self.topic} is not available: {topic and topic.error}")
        partitions = [TopicPartition(self.topic, p) for p in sorted(topic.partitions)]
        positions = self.consumer.committed(partitions, timeout=10)
        for tp in positions:
            if tp.offset == OFFSET_INVALID:
                low, high = self.consumer.get_watermark_offsets(tp, timeout=10)
                tp.offset = high if self.start == "latest" else low
        self.consumer.assign(positions)
        self.assigned = True

    def _next_batch(self) -> list[Any]:
        """Whatever has arrived, up to BATCH messages, as soon as there is one (`consume`
        alone would wait for a full batch or its timeout: half a second of latency)."""
        first = self.consumer.poll(0.5)
        if first is None:
            return []
        return [first, *self.consumer.consume(BATCH - 1, timeout=0)]

    def process(self, messages: list[Any]) -> None:
        """Decode one batch and hand it to Redis; while Redis applies it, the next batch is
        decoded. A batch's offsets are committed once Redis has applied it (at least once)."""
        events, bad, offsets = [], Counter(), {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            offsets[message.partition()] = message.offset() + 1
            event, kind, _ = classify(message.value())
            if event is None:
                bad[kind] += 1
            elif event["event_type"] in RECOMMENDATION_EVENTS:
                bad[NOT_ACTIVITY] += 1
            else:
                events.append(event)
        self.flush()
        if offsets:
            future = self._applier.submit(self.store.apply, events)
            self._pending = (future, events, len(messages), bad, offsets)

    def flush(self) -> None:
        """Wait for the batch Redis is applying, then count it and commit its offsets."""
        if self._pending is None:
            return
        future, events, consumed, bad, offsets = self._pending
        self._pending = None
        good = len(events)
        try:
            applied = future.result()
        except redis.RedisError as exc:
            applied = self._apply_when_back(events, exc)
        self.report.consumed += consumed
        self.report.applied += applied
        self.report.duplicates += good - applied
        not_activity = bad.pop(NOT_ACTIVITY, 0)
        self.report.not_activity += not_activity
        self.report.bad += sum(bad.values())
        for kind, count in bad.items():
            self.report.bad_by_reason[kind] = self.report.bad_by_reason.get(kind, 0) + count
        self.consumer.commit(
            offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()],
            asynchronous=True,
        )
        self._count(consumed, applied, good - applied, bad, not_activity)

    def _apply_when_back(self, events: list[dict], error: Exception) -> int:
        """Redis went away: apply the batch again once it is back (nothing is committed
        meanwhile), saying so; give up after REDIS_PATIENCE seconds."""
        deadline = time.monotonic() + REDIS_PATIENCE
        while True:
            self.log(f"waiting for the online store at {mask_password(self.store.url)}: {error}")
            if time.monotonic() >= deadline:
                raise error
            time.sleep(1.0)
            try:
                return self.store.apply(events)
            except redis.RedisError as exc:
                error = exc

    def _count(
        self, consumed: int, applied: int, duplicates: int, bad: Counter, not_activity: int
    ) -> None:
        if not consumed:
            return
        pipe = self.store.client.pipeline(transaction=False)
        pipe.hincrby(STATS_KEY, "consumed", consumed)
        pipe.hincrby(STATS_KEY, "not_activity", not_activity)
        pipe.hincrby(STATS_KEY, "applied", applied)
        pipe.hincrby(STATS_KEY, "duplicates", duplicates)
        pipe.hincrby(STATS_KEY, "bad", sum(bad.values()))
        for kind, count in bad.items():
            pipe.hincrby(STATS_KEY, f"bad:{kind}", count)
        pipe.execute()

    def _heartbeat(self) -> None:
        if self.assigned:  # healthy = consuming
            self.store.client.hset(STATS_KEY, "heartbeat", time.time())


def run_stream_processor(
    processor: StreamProcessor,
    max_seconds: float | None = None,
    on_batch: Callable[[StreamReport], None] = lambda _: None,
) -> StreamReport:
    """Run until SIGINT/SIGTERM (or `max_seconds`); the current batch is finished first."""
    signal.signal(signal.SIGINT, processor.request_stop)
    signal.signal(signal.SIGTERM, processor.request_stop)
    return processor.run(max_seconds, on_batch)
