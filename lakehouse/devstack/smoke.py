"""Proof that the services work end to end: a message through the broker, a Delta table through
Spark Connect read back by delta-rs. Used by `lakehouse demo`."""

from __future__ import annotations

import json
import time
import uuid

from lakehouse.core.settings import Settings

SMOKE_TOPIC = "lakehouse.smoke"


def broker_round_trip(settings: Settings, topic: str = SMOKE_TOPIC) -> dict:
    """Produce one keyed message and read it back from the exact partition and offset."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    from lakehouse.core.kafka import client_config, ensure_topic

    servers = settings.kafka_bootstrap_servers
    ensure_topic(servers, topic, partitions=1)
    key = uuid.uuid4().hex
    payload = json.dumps({"smoke_id": key, "sent_at": time.time()}).encode()
    started = time.perf_counter()
    delivered = []
    producer = Producer(client_config(servers, acks="all"))
    producer.produce(
        topic, key=key.encode(), value=payload, on_delivery=lambda e, m: delivered.append((e, m))
    )
    producer.flush(30)
    if not delivered or delivered[0][0] is not None:
        raise RuntimeError(f"broker did not acknowledge the message: {delivered}")
    meta = delivered[0][1]

    consumer = Consumer(
        client_config(servers, **{"group.id": "lakehouse-smoke", "enable.auto.commit": False})
    )
    try:
        consumer.assign([TopicPartition(topic, meta.partition(), meta.offset())])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            record = consumer.poll(0.5)
            if record is None or record.error() or record.key() != key.encode():
                continue
            if record.value() != payload:
                raise RuntimeError("broker returned a different payload than was sent")
            return {
                "topic": topic,
                "partition": meta.partition(),
                "offset": meta.offset(),
                "round_trip_ms": round((time.perf_counter() - started) * 1000, 1),
            }
    finally:
        consumer.close()
    raise RuntimeError(f"message {key} was produced to {topic} but not read back within 30s")


def delta_round_trip(settings: Settings) -> dict:
    """Write a Delta table through Spark Connect, read it back there and with delta-rs."""
    from deltalake import DeltaTable

    from lakehouse.core.spark import spark_session, stop_session

    path = settings.lake.table_uri("_smoke.spark_round_trip")
    spark = spark_session(settings.spark_remote)
    started = time.perf_counter()
    rows = [(i, f"row-{i}", float(i) * 1.5) for i in range(1, 101)]
    try:
        df = spark.createDataFrame(rows, "id INT, label STRING, amount DOUBLE")
        df.write.format("delta").mode("overwrite").save(path)
        back = spark.read.format("delta").load(path)
        spark_count = back.count()
        spark_sum = back.agg({"amount": "sum"}).collect()[0][0]
    finally:
        stop_session(spark)
    table = DeltaTable(path, storage_options=settings.lake.storage_options)
    arrow = table.to_pyarrow_table()
    rs_sum = sum(arrow.column("amount").to_pylist())
    if spark_count != len(rows) or arrow.num_rows != len(rows) or abs(spark_sum - rs_sum) > 1e-9:
        raise RuntimeError(
            f"Delta round trip mismatch: wrote {len(rows)} rows, Spark read {spark_count}, "
            f"delta-rs read {arrow.num_rows}"
        )
    return {
        "path": path,
        "rows": spark_count,
        "delta_version": table.version(),
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def recommendation_round_trip(settings: Settings, customer_id: int, product_id: int) -> dict:
    """A customer's recommendations, then a product view posted to the API, then the
    recommendations again: what changed and how long each call took."""
    import datetime as dt
    import urllib.request

    session = f"demo-{uuid.uuid4().hex[:8]}"
    base = f"{settings.api_url}/v1/recommendations/{customer_id}?session_id={session}&k=5"

    def timed(request: urllib.request.Request | str) -> tuple[dict, float]:
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            body = json.loads(response.read())
        return body, round((time.perf_counter() - started) * 1000, 1)

    before, _ = timed(base)
    event = {
        "event_id": str(uuid.uuid4()),
        "event_time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "event_type": "product_view",
        "session_id": session,
        "customer_id": customer_id,
        "product_id": product_id,
        "device": "desktop_web",
        "schema_version": "1.0",
    }
    post = urllib.request.Request(
        f"{settings.api_url}/v1/events", data=json.dumps(event).encode(), method="POST"
    )
    _, post_ms = timed(post)
    after, get_ms = timed(base)
    return {
        "customer_id": customer_id,
        "viewed": product_id,
        "before": [i["product_id"] for i in before["items"]],
        "after": [i["product_id"] for i in after["items"]],
        "first_reason": after["items"][0]["reason"],
        "post_ms": post_ms,
        "get_ms": get_ms,
        "snapshot_version": after["snapshot_version"],
    }
