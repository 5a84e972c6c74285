"""Kafka → bronze on the real embedded broker and real Delta tables: exactly once, through
crashes and rebalances."""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from deltalake import DeltaTable

from generator.events import simulated_messages
from generator.world import PRESETS
from lakehouse.core.kafka import ensure_topic
from lakehouse.core.settings import Settings
from streaming.contract import json_schema
from streaming.ingest import IngestOptions, ingest, ingest_status
from streaming.producer import DRIFT_VERSION, Faults, ProduceReport, produce
from tests.conftest import LAKEHOUSE, cli_json, run_cli, settings_of

pytestmark = pytest.mark.integration

FAULTS = Faults(duplicates=0.02, late=0.02, malformed=0.01, drift=0.02)


def settings_for(env: dict[str, str]) -> Settings:
    return settings_of(env)


def produce_events(
    settings: Settings,
    topic: str,
    events: int,
    ack_log: Path,
    *,
    partitions: int,
    rate=0.0,
    until: threading.Event | None = None,
) -> ProduceReport:
    """`events` of the demo world's clickstream (fewer if `until` is set first)."""
    messages = simulated_messages(PRESETS["demo"])
    if until is not None:
        messages = itertools.takewhile(lambda _: not until.is_set(), messages)
    return produce(
        settings.kafka_bootstrap_servers,
        topic,
        messages,
        faults=FAULTS,
        rate=rate,
        max_events=events,
        partitions=partitions,
        ack_log=ack_log,
    )


def read_acks(path: Path) -> list[tuple[int, int, str, str]]:
    """(partition, offset, kind, event id) of each acknowledgement; offset -1 where the broker
    acknowledged without one (a retried batch it already had: idempotent producer)."""
    with path.open() as handle:
        return [
            (int(r["partition"]), int(r["offset"] or -1), r["kind"], r["event_id"])
            for r in csv.DictReader(handle)
        ]


def assert_exactly_once(settings: Settings, topic: str, acks, report: ProduceReport) -> dict:
    """Bronze holds every acknowledged valid message once and every malformed one as a dead
    letter once, and nothing else."""
    events = DeltaTable(settings.lake.table_uri("bronze.events")).to_pyarrow_table(
        columns=["kafka_topic", "kafka_partition", "kafka_offset", "event_id"]
    )
    dead = DeltaTable(settings.lake.table_uri("bronze.events_dead_letter")).to_pyarrow_table(
        columns=["kafka_topic", "kafka_partition", "kafka_offset"]
    )
    assert set(events.column("kafka_topic").to_pylist()) <= {topic}
    event_keys = list(
        zip(events["kafka_partition"].to_pylist(), events["kafka_offset"].to_pylist(), strict=True)
    )
    dead_keys = list(
        zip(dead["kafka_partition"].to_pylist(), dead["kafka_offset"].to_pylist(), strict=True)
    )
    good_acks = {(p, o): e for p, o, kind, e in acks if not kind.startswith("malformed")}
    bad_acks = {(p, o) for p, o, kind, _ in acks if kind.startswith("malformed")}
    duplicated = [k for k, n in Counter(event_keys).items() if n > 1]
    assert not duplicated, f"{len(duplicated)} offsets written twice, e.g. {duplicated[:5]}"
    assert set(event_keys) == set(good_acks), (
        f"missing {len(set(good_acks) - set(event_keys))}, "
        f"unexpected {len(set(event_keys) - set(good_acks))}"
    )
    assert len(dead_keys) == len(set(dead_keys)) and set(dead_keys) == bad_acks
    ids = events.column("event_id").to_pylist()
    assert Counter(ids) == Counter(good_acks.values())
    assert len(set(ids)) == report.events
    return {"events": len(event_keys), "distinct": len(set(ids)), "dead": len(dead_keys)}


def test_bounded_ingest_routes_every_message_once_and_reruns_write_nothing(
    lake_env: dict[str, str], tmp_path: Path
) -> None:
    settings = settings_for(lake_env)
    topic = "ingest-bounded"
    acks = tmp_path / "acks.csv"
    report = produce_events(settings, topic, 20_000, acks, partitions=3)

    first = cli_json("ingest", "--topic", topic, "--batch-events", "7000", env=lake_env)
    assert first["messages"] == report.acknowledged
    assert first["batches"] >= 3 and sum(first["lag"].values()) == 0
    counts = assert_exactly_once(settings, topic, read_acks(acks), report)
    assert first["events_written"] == counts["events"]
    assert first["dead_letters_written"] == counts["dead"] == report.messages - counts["events"]

    dead = DeltaTable(settings.lake.table_uri("bronze.events_dead_letter")).to_pyarrow_table()
    assert set(dead.column("error_kind").to_pylist()) == {
        "undecodable",
        "invalid_json",
        "contract_violation",
        "unknown_event_type",
    }
    assert all(dead.column("reason").to_pylist()) and all(dead.column("raw_value").to_pylist())
    version = DeltaTable(settings.lake.table_uri("bronze.events")).version()
    again = cli_json("ingest", "--topic", topic, env=lake_env)
    assert again["messages"] == 0 and again["events_written"] == 0
    assert DeltaTable(settings.lake.table_uri("bronze.events")).version() == version

    status = cli_json("ingest", "--topic", topic, "--status", env=lake_env)
    assert status["total_lag"] == 0
    assert sum(p["next_offset"] for p in status["partitions"]) == report.acknowledged


def test_newer_schema_versions_keep_their_extra_fields(lake_env: dict[str, str], tmp_path):
    settings = settings_for(lake_env)
    topic = "ingest-drift"
    report = produce_events(settings, topic, 3_000, tmp_path / "acks.csv", partitions=1)
    ingest(settings.lake, settings.kafka_bootstrap_servers, IngestOptions(topic=topic))
    table = DeltaTable(settings.lake.table_uri("bronze.events")).to_pyarrow_table(
        columns=["schema_version", "payload"]
    )
    rows = table.to_pylist()
    drifted = [json.loads(r["payload"]) for r in rows if r["schema_version"] == DRIFT_VERSION]
    # a drifted event may also be sent late (counted as late) or twice (same event_id)
    assert len({e["event_id"] for e in drifted}) >= report.kinds["drift"] > 0
    known = set(json_schema()["properties"])
    assert all(set(event) - known for event in drifted)  # the unknown field is still there


def test_missing_topic_is_a_clear_error(lake_env: dict[str, str]) -> None:
    result = run_cli("ingest", "--topic", "no-such-topic", env=lake_env, check=False)
    assert result.returncode == 1
    assert "'no-such-topic' does not exist" in result.stderr.replace("\n", " ")


def follower(env: dict[str, str], topic: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *LAKEHOUSE,
            "ingest",
            "--follow",
            "--json",
            "--topic",
            topic,
            "--batch-events",
            "5000",
            "--batch-seconds",
            "0.5",
            "--session-timeout-ms",
            "3000",
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_commit(settings: Settings, topic: str, pid: int, timeout: float = 60.0) -> None:
    """Until the follower with this pid has committed a batch (its status file appears)."""
    path = settings.run_dir / f"ingest-{topic}-{pid}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"ingester {pid} committed nothing within {timeout}s")


def in_background(target) -> threading.Thread:
    result: dict = {}

    def run() -> None:
        result["value"] = target()

    thread = threading.Thread(target=run, daemon=True)
    thread.result = result
    thread.start()
    return thread


MAX_EVENTS = 600_000  # produced while the ingesters are killed: at most 400 s at 1,500/s
KILL_MOMENTS = (
    "at a random moment",
    "as soon as new parquet files appear",  # mostly: written, not yet committed
    "right after a commit",
    "before its first commit",
)


def parquet_files(uri: str) -> set[Path]:
    return set(Path(uri).rglob("*.parquet"))


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.002)


def orphan_files(uri: str) -> int:
    """Parquet files in the table directory that no commit references (killed mid-write)."""
    referenced = {Path(u).resolve() for u in DeltaTable(uri).file_uris()}
    return sum(1 for f in parquet_files(uri) if f.resolve() not in referenced)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    lake_env: dict[str, str], tmp_path: Path
) -> None:
    settings = settings_for(lake_env)
    topic = "ingest-sigkill"
    acks = tmp_path / "acks.csv"
    ensure_topic(settings.kafka_bootstrap_servers, topic, 3)
    # production at 1,500 msgs/s lasts until every kind of kill has landed while messages
    # arrive (they take turns; a cycle of a group join, waiting out the killed member's session,
    # a commit and a wait takes 5-20 s, longer on a loaded machine)
    enough = threading.Event()
    producer = in_background(
        lambda: produce_events(
            settings, topic, MAX_EVENTS, acks, partitions=3, rate=1_500, until=enough
        )
    )
    rng = random.Random(20251128)
    events_uri = settings.lake.table_uri("bronze.events")
    kills: Counter = Counter()
    while producer.is_alive():
        moment = KILL_MOMENTS[sum(kills.values()) % len(KILL_MOMENTS)]
        proc = follower(lake_env, topic)
        try:
            if moment == "before its first commit":
                time.sleep(rng.uniform(0.0, 3.0))
            else:
                wait_for_commit(settings, topic, proc.pid)
            if moment == "at a random moment":
                time.sleep(rng.uniform(0.0, 1.5))
            elif moment == "as soon as new parquet files appear":
                seen = parquet_files(events_uri)
                wait_until(lambda: parquet_files(events_uri) - seen)  # noqa: B023
            elif moment == "right after a commit":
                commits = len(list(Path(events_uri, "_delta_log").glob("*.json")))
                wait_until(
                    lambda: len(list(Path(events_uri, "_delta_log").glob("*.json"))) > commits  # noqa: B023
                )
        finally:
            proc.kill()
            proc.wait()
        kills[moment] += 1
        if set(kills) == set(KILL_MOMENTS):
            enough.set()
            break
    producer.join()
    assert set(kills) == set(KILL_MOMENTS), f"only {kills} happened while producing"
    report = producer.result["value"]
    assert report.events > 0

    drained = cli_json("ingest", "--topic", topic, env=lake_env)
    counts = assert_exactly_once(settings, topic, read_acks(acks), report)
    orphans = orphan_files(settings.lake.table_uri("bronze.events"))
    print(
        f"\nsigkill test: kills {dict(kills)}, {report.messages:,} messages acknowledged, "
        f"{counts['events']:,} bronze rows ({counts['distinct']:,} distinct events), "
        f"{counts['dead']:,} dead letters; final drain read {drained['messages']:,}; "
        f"{orphans} uncommitted parquet files left by kills mid-write"
    )


@pytest.mark.slow
def test_two_ingesters_in_one_group_through_a_rebalance(
    lake_env: dict[str, str], tmp_path: Path
) -> None:
    settings = settings_for(lake_env)
    topic = "ingest-rebalance"
    acks = tmp_path / "acks.csv"
    ensure_topic(settings.kafka_bootstrap_servers, topic, 6)
    producer = in_background(
        lambda: produce_events(settings, topic, 120_000, acks, partitions=6, rate=10_000)
    )
    first = follower(lake_env, topic)
    wait_for_commit(settings, topic, first.pid)
    second = follower(lake_env, topic)  # joining forces a rebalance mid-stream
    try:
        wait_for_commit(settings, topic, second.pid)
        producer.join()
        deadline = time.monotonic() + 120
        while (
            ingest_status(settings.lake, settings.kafka_bootstrap_servers, topic)["total_lag"]
            and time.monotonic() < deadline
        ):
            time.sleep(0.5)
    finally:
        for proc in (first, second):
            proc.send_signal(signal.SIGTERM)
        outputs = [proc.communicate(timeout=60) for proc in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    reports = [json.loads(out) for out, _ in outputs]
    assert reports[0]["rebalances"] >= 2  # its first assignment, then the one B's join caused
    assert all(r["events_written"] > 0 for r in reports)

    counts = assert_exactly_once(settings, topic, read_acks(acks), producer.result["value"])
    writers = {
        h.get("ingester")
        for h in DeltaTable(settings.lake.table_uri("bronze.events")).history()
        if h.get("ingester")
    }
    assert {f"{os.uname().nodename}:{p.pid}" for p in (first, second)} <= writers
    print(f"\nrebalance test: {counts}, reports {[r['events_written'] for r in reports]}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "--status", "--follow"], "cannot be combined"),
        (["ingest", "--batch-events", "0"], "--batch-events"),
        (["ingest", "--session-timeout-ms", "10"], "--session-timeout-ms"),
        (["extract", "--table", "MV_Nope"], "unknown ERP table"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(lake_env, args: list[str], message: str) -> None:
    result = run_cli(*args, env=lake_env, check=False)
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split())
