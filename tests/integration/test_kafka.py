"""Keyed produce/consume through the embedded broker with kafka-python, incl. group resume."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

pytestmark = pytest.mark.integration

GROUP_SETTINGS = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    # tansu completes a group join after about half the session timeout: keep it short.
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
}


def _consume(consumer: KafkaConsumer, want: int, timeout_s: float = 30) -> list:
    import time

    records, deadline = [], time.monotonic() + timeout_s
    while len(records) < want and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500, max_records=want - len(records)).values():
            records.extend(batch)
    return records


def test_keyed_round_trip_with_group_commit_and_resume(platform_env: dict[str, str]) -> None:
    servers = platform_env["KAFKA_BOOTSTRAP_SERVERS"]
    topic, group = f"roundtrip-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=servers)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()

    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    sent = []  # (key, value, partition, offset)
    for i in range(90):
        key, value = f"session-{i % 9}".encode(), f"event-{i}".encode()
        meta = producer.send(topic, key=key, value=value).get(timeout=30)
        sent.append((key, value, meta.partition, meta.offset))
    producer.close()

    partitions_per_key = defaultdict(set)
    for key, _, partition, _ in sent:
        partitions_per_key[key].add(partition)
    assert all(len(p) == 1 for p in partitions_per_key.values()), "a key spread over partitions"
    assert len({p for ps in partitions_per_key.values() for (p,) in [tuple(ps)]}) > 1

    first = KafkaConsumer(topic, bootstrap_servers=servers, group_id=group, **GROUP_SETTINGS)
    part_one = _consume(first, 40)
    first.commit()  # commits the positions after what was returned
    first.close(autocommit=False)
    assert len(part_one) == 40

    second = KafkaConsumer(topic, bootstrap_servers=servers, group_id=group, **GROUP_SETTINGS)
    part_two = _consume(second, 50)
    assert not _consume(second, 1, timeout_s=2), "more records than were produced"
    second.close(autocommit=False)

    seen = [(r.key, r.value, r.partition, r.offset) for r in part_one + part_two]
    assert len(seen) == len(set(seen)) == 90, "resume after commit duplicated or lost records"
    assert sorted(seen) == sorted(sent)
    for key in partitions_per_key:  # per-key order is the produce order
        values = [v for k, v, _, _ in sorted(seen, key=lambda r: (r[2], r[3])) if k == key]
        assert values == [v for k, v, _, _ in sent if k == key]
