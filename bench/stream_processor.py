"""The stream processor's throughput (one process) and the time from Kafka to the online store.

    .venv/bin/python bench/stream_processor.py [--events 200000] [--probes 200]

Starts its own broker and Redis (free ports, a temporary data root), produces `--events`
simulated demo-world events, then times one `StreamProcessor` applying all of them from the
start of the topic (events/s, median of `--repeat` runs, each on an empty Redis). Then, with the
processor running live, sends `--probes` product views one at a time and measures how long each
takes to show in the session's activity in Redis (p50/p95/p99).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
from common import free_port
from confluent_kafka import Producer

from generator.events import simulated_messages
from generator.world import PRESETS
from lakehouse.core.kafka import client_config, ensure_topic
from lakehouse.core.settings import Settings
from lakehouse.devstack.services import ServiceManager, define_services
from lakehouse.devstack.stream import online_store
from streaming.processor import StreamProcessor


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--probes", type=int, default=200)
    return parser.parse_args()


def produce_world(settings: Settings, topic: str, events: int) -> int:
    producer = Producer(client_config(settings.kafka_bootstrap_servers, **{"linger.ms": 20}))
    sent = 0
    for key, event, _ in simulated_messages(PRESETS["demo"]):
        producer.produce(topic, orjson.dumps(event), key)
        sent += 1
        if sent % 50_000 == 0:
            producer.poll(0)
        if sent >= events:
            break
    producer.flush(60)
    return sent


def throughput(settings: Settings, topic: str, events: int) -> float:
    store = online_store(settings)
    store.client.flushdb()
    processor = StreamProcessor(
        settings.kafka_bootstrap_servers, topic, f"bench-{uuid.uuid4().hex[:6]}", store, "earliest"
    )
    processor._assign()
    started = time.perf_counter()
    while processor.report.consumed < events:
        processor.process(processor.consumer.consume(2_000, timeout=1.0))
    seconds = time.perf_counter() - started
    processor.consumer.close()
    store.close()
    return events / seconds


def latencies(settings: Settings, topic: str, probes: int) -> list[float]:
    """Seconds from a produce call to the event showing in Redis, with a live processor."""
    store = online_store(settings)
    processor = StreamProcessor(
        settings.kafka_bootstrap_servers, topic, f"live-{uuid.uuid4().hex[:6]}", store, "latest"
    )
    runner = threading.Thread(target=processor.run, daemon=True)
    runner.start()
    while not processor.assigned:
        time.sleep(0.05)
    time.sleep(0.5)
    producer = Producer(client_config(settings.kafka_bootstrap_servers, **{"linger.ms": 0}))
    found = []
    for n in range(probes):
        session = f"probe-{uuid.uuid4().hex[:8]}"
        event = {
            "event_id": str(uuid.uuid4()),
            "event_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "event_type": "product_view",
            "session_id": session,
            "product_id": 1 + n,
            "device": "desktop_web",
            "schema_version": "1.0",
        }
        sent = time.perf_counter()
        producer.produce(topic, orjson.dumps(event), session.encode())
        producer.poll(0)
        while not store.client.exists(f"sess:{session}:view"):
            if time.perf_counter() - sent > 10:
                raise SystemExit(f"probe {n} not seen within 10 s")
            time.sleep(0.002)
        found.append(time.perf_counter() - sent)
    processor.request_stop()
    runner.join(10)
    store.close()
    return found


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        settings = Settings(
            data_root=Path(tmp),
            kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
            broker_store_url=f"http://127.0.0.1:{free_port()}",
            redis_port=free_port(),
        )
        wanted = {"broker-store", "broker", "redis"}
        manager = ServiceManager(
            settings, [s for s in define_services(settings) if s.name in wanted]
        )
        manager.up()
        try:
            topic = f"bench-{uuid.uuid4().hex[:6]}"
            ensure_topic(settings.kafka_bootstrap_servers, topic, partitions=6)
            events = produce_world(settings, topic, args.events)
            rates = [throughput(settings, topic, events) for _ in range(args.repeat)]
            seen = sorted(latencies(settings, topic, args.probes))
        finally:
            manager.down()

    def pct(q: float) -> float:
        return seen[min(len(seen) - 1, int(q * len(seen)))] * 1000

    print(f"\nstream processor, one process, {events:,} demo-world events, {args.repeat} runs")
    print(f"{'measure':<40} {'value':>12}")
    print(f"{'events/s (median)':<40} {statistics.median(rates):>12,.0f}")
    print(f"{'events/s (min .. max)':<40} {min(rates):>6,.0f}..{max(rates):,.0f}")
    print(f"{'Kafka → Redis p50 ms':<40} {pct(0.50):>12.1f}")
    print(f"{'Kafka → Redis p95 ms':<40} {pct(0.95):>12.1f}")
    print(f"{'Kafka → Redis p99 ms':<40} {pct(0.99):>12.1f}")


if __name__ == "__main__":
    main()
