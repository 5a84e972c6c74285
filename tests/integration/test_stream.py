"""The stream processor against the real broker and Redis: session and customer activity, live
counters and the order feed; duplicates, replays and bad messages never count."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
import yaml
from confluent_kafka import Producer

from lakehouse.core.kafka import client_config, ensure_topic
from lakehouse.core.settings import Settings
from lakehouse.devstack.services import ServiceManager
from lakehouse.devstack.stream import online_store
from serving.health import down
from streaming.online import OnlineStore
from streaming.processor import StreamProcessor
from tests.conftest import replace_settings
from warehouse.stream_kpis import (
    KEEP,
    MINUTES,
    publish_stream_kpis,
    stream_path,
    stream_warehouse,
)
from warehouse.superset.bundle import SPEC_DIR

pytestmark = pytest.mark.integration

MINUTE = "2024-02-29T10:15"  # a minute no other test writes to


def event(event_type: str, product_id: int | None, second: int, **extra: Any) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_time": f"{MINUTE}:{second:02d}Z",
        "event_type": event_type,
        "session_id": "s-live",
        "customer_id": 42,
        "device": "mobile_web",
        "schema_version": "1.0",
        **({"product_id": product_id} if product_id else {}),
        **extra,
    }


def send(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = Producer(client_config(settings.kafka_bootstrap_servers, acks="all"))
    for value in values:
        producer.produce(topic, value=value, key=b"s-live")
    assert producer.flush(30) == 0


def drain(settings: Settings, topic: str, group: str, store: OnlineStore, expected: int):
    processor = StreamProcessor(
        settings.kafka_bootstrap_servers, topic, group, store, start="earliest"
    )
    deadline = time.monotonic() + 60
    processor._assign()
    try:
        while processor.report.consumed < expected and time.monotonic() < deadline:
            processor.process(processor.consumer.consume(500, timeout=0.5))
    finally:
        processor.consumer.close()
    assert processor.report.consumed == expected, "timed out waiting for the topic's messages"
    return processor.report


@pytest.fixture(scope="module")
def settings(platform_settings: Settings) -> Settings:
    """The platform's services, but a Redis database of this module's own (other modules use
    database 0 of the same server at the same time)."""
    url = f"redis://127.0.0.1:{platform_settings.redis_port}/3"
    return replace_settings(platform_settings, redis_url=url)


@pytest.fixture
def topic(settings: Settings) -> str:
    name = f"stream-{uuid.uuid4().hex[:8]}"
    ensure_topic(settings.kafka_bootstrap_servers, name, partitions=2)
    return name


@pytest.fixture
def store(settings: Settings):
    store = online_store(settings)
    store.client.flushdb()  # database 3 only
    yield store
    store.close()


def test_events_update_the_online_store_once_and_bad_messages_are_skipped(
    settings: Settings, topic: str, store: OnlineStore
) -> None:
    view = event("product_view", 11, 1)
    events = [
        view,
        event("product_view", 12, 2),
        event("add_to_cart", 12, 3, quantity=1, price=10.0),
        event("add_to_cart", 13, 4, quantity=1, price=5.0),
        event("remove_from_cart", 13, 5, quantity=1),
        event("purchase", 12, 6, quantity=2, price=10.0, order_id=7, city="Lahore"),
        event("page_view", None, 7),
    ]
    values = [orjson.dumps(e) for e in events]
    values += [values[0], orjson.dumps(view)]  # a duplicate message, the same event resent
    values += [b"\xff\xfe not json", b'{"event_type": "purchase"}', b""]
    # what the API showed and what was clicked: not the session's activity
    shown = dict(request_id="r1", recommended_product_ids=[15], schema_version="1.1")
    values.append(orjson.dumps(event("recommendation_impression", None, 8, **shown)))
    clicked = dict(request_id="r1", position=1, schema_version="1.1")
    values.append(orjson.dumps(event("recommendation_click", 15, 9, **clicked)))
    send(settings, topic, values)

    report = drain(settings, topic, "g1", store, len(values))
    assert (report.applied, report.duplicates, report.bad) == (7, 2, 3)
    assert report.not_activity == 2
    assert report.bad_by_reason == {
        "undecodable": 1,
        "contract_violation": 1,
        "empty_message": 1,
    }

    live = store.activity("s-live", 42)
    for owner in ("session", "customer"):
        assert live[owner]["view"] == [12, 11]  # newest first
        assert live[owner]["cart"] == []  # 13 removed, 12 bought
        assert live[owner]["buy"] == [12]
    assert all(store.client.ttl(k) > 0 for k in store.client.keys("sess:*"))
    assert all(store.client.ttl(k) > 0 for k in store.client.keys("live:m:*"))  # feed: capped

    now = time.mktime(time.strptime(MINUTE, "%Y-%m-%dT%H:%M")) - time.timezone + 30
    minute = store.minutes(last=1, now=now)[0]
    assert minute["events"] == 7 and minute["product_views"] == 2
    assert (minute["purchases"], minute["orders"], minute["revenue"]) == (1, 1, 20.0)
    assert minute["active_sessions"] == 1 and minute["conversion"] == 1.0
    [order] = store.orders()
    assert (order["order_id"], order["product_id"], order["amount"]) == ("7", "12", "20.0")

    # the group resumes where it committed: only what was sent since
    late = event("product_view", 14, 8)
    send(settings, topic, [orjson.dumps(late)])
    assert drain(settings, topic, "g1", store, 1).applied == 1
    assert store.activity("s-live", None)["session"]["view"] == [14, 12, 11]
    minute["events"] += 1
    minute["product_views"] += 1

    # a replay of the whole topic (another group from the start) changes nothing
    again = drain(settings, topic, "g2", store, len(values) + 1)
    assert (again.applied, again.duplicates) == (0, 10)
    assert store.minutes(last=1, now=now)[0] == minute
    stats = store.stats()
    assert stats["applied"] == 8 and stats["duplicates"] == 12 and stats["bad"] == 6


def test_the_managed_processor_reflects_a_produced_event_within_a_second(
    settings: Settings, store: OnlineStore
) -> None:
    manager = ServiceManager(settings)
    try:
        [*_, stream] = manager.up(include=("stream",))
        assert stream.name == "stream" and stream.healthy and stream.started
        assert "stream" in {s.name for s in manager.status()}
        product = 900_000 + int(time.time()) % 1000
        stamp = dt.datetime.now(dt.UTC).replace(microsecond=0)
        when = {"event_time": stamp.isoformat().replace("+00:00", "Z")}
        sent = time.monotonic()
        send(
            settings,
            settings.events_topic,
            [orjson.dumps(event("product_view", product, 1, session_id="s-managed", **when))],
        )
        while time.monotonic() - sent < 10:
            if store.activity("s-managed", None)["session"]["view"]:
                break
            time.sleep(0.02)
        seen = time.monotonic() - sent
        assert store.activity("s-managed", None)["session"]["view"] == [product]
        assert seen < 1.0, f"reflected after {seen:.2f} s"

        # beside it, the stream file the Real-time dashboard reads is republished with it
        newest = None
        while time.monotonic() - sent < 30 and (newest is None or newest < stamp):
            time.sleep(0.2)
            path = stream_path(settings.warehouse_path)
            if path.exists():
                with duckdb.connect(str(path), read_only=True) as con:
                    newest = con.execute("SELECT newest_event_at FROM stream_refresh").fetchone()[0]
        assert newest is not None and newest >= stamp, newest
    finally:
        [stopped] = manager.down(only=("stream",))
    assert stopped.detail.startswith("stopped pid")
    assert "stream" not in {s.name for s in manager.status()}


def test_the_stream_file_publishes_the_store_s_counters(store: OnlineStore, tmp_path: Path) -> None:
    now = time.time()
    stamp = dt.datetime.fromtimestamp(int(now) - 1, dt.UTC)
    when = {"event_time": stamp.isoformat().replace("+00:00", "Z"), "session_id": "s-file"}
    store.apply(
        [
            event("product_view", 12, 1, **when),
            event("purchase", 12, 2, quantity=2, price=10.0, order_id=9, city="Lahore", **when),
        ]
    )
    store.record_api_health(down(now - 5))  # the API was not up yet, then answered
    store.record_api_health({"scraped_at": now, "api_up": True, "requests": 50, "p95_ms": 4.2})
    first = publish_stream_kpis(store, tmp_path, now=now)
    assert (first.events, first.newest_event_at) == (2, stamp)
    seconds_behind = yaml.safe_load((SPEC_DIR / "datasets.yaml").read_text())["stream_refresh"][
        "metrics"
    ]["seconds_behind"]["sql"]
    with duckdb.connect(str(first.path), read_only=True) as con:
        minutes = con.execute(
            "SELECT count(*), sum(events), sum(orders), sum(revenue), "
            "sum(converted_sessions) / sum(active_sessions) FROM stream_kpi_minute"
        ).fetchone()
        orders = con.execute(
            "SELECT order_id, product_id, amount, city FROM stream_orders"
        ).fetchall()
        behind = con.execute(f"SELECT {seconds_behind} FROM stream_refresh").fetchone()[0]
        health = con.execute(
            "SELECT api_up, requests, p95_ms FROM stream_api_health ORDER BY scraped_at"
        ).fetchall()
    assert health == [(False, 0, None), (True, 50, 4.2)]
    assert minutes == (MINUTES, 2, 1, 20, 1.0)
    assert orders == [("9", "12", 20, "Lahore")]
    assert 0 < behind < 60

    for _ in range(KEEP + 1):
        latest = publish_stream_kpis(store, tmp_path, now=now)
    builds = stream_warehouse(tmp_path).builds()
    assert len(builds) == KEEP and builds[-1].build_id == latest.build_id != first.build_id
