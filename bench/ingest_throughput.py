"""Kafka → bronze ingestion: throughput of one ingester process, and produce-to-queryable lag.

    .venv/bin/python bench/ingest_throughput.py      # 1 M events x 3 runs; lag at 3,500/s
    .venv/bin/python bench/ingest_throughput.py --events 300000 --repeat 5 --lag-seconds 30
    .venv/bin/python bench/ingest_throughput.py --broker-storage s3://tansu/,memory://tansu/

Each broker storage given (`--broker-storage`, default the durable s3:// one) gets services of
its own; with more than one, a table compares them: broker start-up, produce rate, ingest rate,
broker and object-store RSS.

Throughput: the demo clickstream is produced once to a 6-partition topic on the embedded broker;
then each run is a fresh `lakehouse ingest` process (bounded mode, new consumer group, new lake)
that drains it. "Sustained" counts from the moment the group assigned partitions (the embedded
broker takes ~3 s to complete a join) to the last commit. Medians over the runs.

Lag: `lakehouse ingest --follow` runs while `lakehouse produce --rate` sends events at the
business peak (3,500/s by default). For every event, lag = the Delta commit that made it
queryable (commit timestamp, found through the batch id) minus its Kafka timestamp.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import CLI, free_port, run_json
from deltalake import DeltaTable

from lakehouse.core.settings import Settings
from lakehouse.devstack.services import ServiceManager


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def throughput(env: dict[str, str], root: Path, events: int, repeat: int) -> dict[str, float]:
    topic = "bench-throughput"
    produced = run_json(
        ["produce", "--preset", "demo", "--events", str(events), "--topic", topic], env
    )
    print(f"produced {produced['messages']:,} messages to {topic} in {produced['seconds']} s")
    runs = []
    for i in range(repeat):
        run_env = env | {"LAKE_URI": str(root / f"lake-{i}")}
        report = run_json(["ingest", "--topic", topic, "--group", f"bench-{i}"], run_env)
        assert report["events_written"] == produced["events"], report
        runs.append(report)
        print(
            f"  run {i + 1}: {report['messages']:,} msgs, {report['events_per_second']:,.0f} "
            f"msgs/s sustained, {report['seconds']} s in all (joined after "
            f"{report['joined_after']} s), {report['batches']} commits, "
            f"peak RSS {report['peak_rss_mb']:.0f} MB"
        )
    rate = statistics.median(r["events_per_second"] for r in runs)
    wall = statistics.median(r["seconds"] for r in runs)
    rss = statistics.median(r["peak_rss_mb"] for r in runs)
    print(
        f"THROUGHPUT median of {repeat}: {rate:,.0f} events/s sustained "
        f"({events / wall:,.0f}/s including the group join), peak RSS {rss:.0f} MB"
    )
    return {"produce_per_s": produced["messages"] / produced["seconds"], "ingest_per_s": rate}


def lag(env: dict[str, str], root: Path, rate: int, seconds: int) -> None:
    topic = "bench-lag"
    run_env = env | {"LAKE_URI": str(root / "lake-lag")}
    run_json(["produce", "--preset", "demo", "--events", "10", "--topic", topic], run_env)
    follower = subprocess.Popen(
        [CLI, "ingest", "--follow", "--json", "--topic", topic, "--batch-seconds", "1"],
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    uri = f"{run_env['LAKE_URI']}/bronze/events"
    while not Path(uri, "_delta_log", "00000000000000000001.json").exists():
        time.sleep(0.1)  # joined and committed the warm-up events
    produced = run_json(
        [
            "produce",
            "--preset",
            "demo",
            "--start",
            "2025-10-01",
            "--rate",
            str(rate),
            "--duration",
            str(seconds),
            "--topic",
            topic,
        ],
        run_env,
    )
    time.sleep(3)
    follower.send_signal(signal.SIGINT)
    report = json.loads(follower.communicate(timeout=60)[0])
    table = DeltaTable(uri)
    history = [h for h in table.history() if "batch_id" in h]
    committed = {h["batch_id"]: h["timestamp"] for h in history if h["version"] > 1}
    rows = table.to_pyarrow_table(columns=["batch_id", "kafka_timestamp"]).to_pylist()
    lags = [  # the warm-up events (version 1) waited for the group join: left out
        committed[r["batch_id"]] / 1000 - r["kafka_timestamp"].timestamp()
        for r in rows
        if r["batch_id"] in committed
    ]
    print(
        f"LAG at {produced['events_per_second']:,.0f} msgs/s for {produced['seconds']} s "
        f"({len(lags):,} events, {report['batches']} commits): "
        f"p50 {percentile(lags, 0.5) * 1000:,.0f} ms, p95 {percentile(lags, 0.95) * 1000:,.0f} ms, "
        f"max {max(lags) * 1000:,.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lag-rate", type=int, default=3_500, help="msgs/s; 0 skips lag")
    parser.add_argument("--lag-seconds", type=int, default=60)
    parser.add_argument(
        "--broker-storage",
        default="s3://tansu/",
        help="comma-separated LAKEHOUSE_BROKER_STORAGE values to compare",
    )
    args = parser.parse_args()
    rows = [run_storage(storage, args) for storage in args.broker_storage.split(",")]
    if len(rows) > 1:
        print(
            f"\n{'storage':<16} {'broker up s':>11} {'produce/s':>10} {'ingest/s':>10} "
            f"{'broker MB':>9} {'store MB':>8}"
        )
        for r in rows:
            print(
                f"{r['storage']:<16} {r['broker_up_s']:>11.2f} {r['produce_per_s']:>10,.0f} "
                f"{r['ingest_per_s']:>10,.0f} {r['broker_mb']:>9.0f} {r['store_mb']:>8.0f}"
            )


def run_storage(storage: str, args: argparse.Namespace) -> dict:
    """Fresh services on `storage`; the throughput (and lag) figures and what they cost."""
    print(f"== broker storage {storage}")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        settings = Settings(
            data_root=root / "services",
            kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
            spark_remote=f"sc://127.0.0.1:{free_port()}",
            broker_storage=storage,
            broker_store_url=f"http://127.0.0.1:{free_port()}",
            redis_port=free_port(),
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LAKEHOUSE_DATA_ROOT": str(settings.data_root),
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "SPARK_REMOTE": settings.spark_remote,
            "LAKEHOUSE_BROKER_STORAGE": storage,
            "LAKEHOUSE_BROKER_STORE_URL": settings.broker_store_url,
            "LAKEHOUSE_REDIS_PORT": str(settings.redis_port),
        }
        manager = ServiceManager(settings)
        started = {s.name: s.startup_seconds or 0.0 for s in manager.up()}
        try:
            figures = throughput(env, root, args.events, args.repeat)
            memory = {s.name: s.rss_mb or 0.0 for s in manager.status()}
            if args.lag_rate:
                lag(env, root, args.lag_rate, args.lag_seconds)
        finally:
            manager.down()
    return {
        "storage": storage,
        "broker_up_s": started["broker"] + started.get("broker-store", 0.0),
        **figures,
        "broker_mb": memory["broker"],
        "store_mb": memory.get("broker-store", 0.0),
    }


if __name__ == "__main__":
    main()
