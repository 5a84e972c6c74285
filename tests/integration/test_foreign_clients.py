"""A Kafka client that is not the project's: Debian's `kcat` sends edge cases to the embedded
broker, and each lands in bronze.events or the dead letter with its reason, found by offset.

Debian's kcat links the system librdkafka (2.0.2 on Debian 12), which cannot read the embedded
broker's ApiVersions v3 answer; the same kcat runs on a newer librdkafka (the one bundled with
the project's confluent-kafka) through LD_LIBRARY_PATH. Both facts are checked here, so the
minimum client version in docs/bronze_events.md stays true."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import confluent_kafka
import pytest
from deltalake import DeltaTable

from generator.events import simulated_messages
from generator.world import PRESETS
from streaming.ingest import DEAD_LETTER_TABLE, EVENTS_TABLE, IngestOptions, ingest
from tests.integration.test_ingest import settings_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not installed: `./run test` installs it (Debian package kcat)")
    return path


@pytest.fixture(scope="module")
def newer_librdkafka(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment in which kcat loads the librdkafka bundled with confluent-kafka."""
    bundled = next(
        (Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs").glob(
            "librdkafka*.so*"
        )
    )
    directory = tmp_path_factory.mktemp("librdkafka")
    (directory / "librdkafka.so.1").symlink_to(bundled)
    return {**os.environ, "LD_LIBRARY_PATH": str(directory)}


def run_kcat(
    kcat: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [kcat, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def kcat_produce(
    kcat: str,
    servers: str,
    topic: str,
    value: bytes | None,
    options: list[str],
    env: dict[str, str],
    directory: Path,
) -> subprocess.CompletedProcess:
    """One message to partition 0: a file argument is one message; kcat skips empty files, so
    an empty or null value goes through stdin as `key:` (-K:), with -Z for null."""
    base = [kcat, "-b", servers, "-t", topic, "-p", "0", "-P"]
    if value:
        payload = directory / f"{uuid.uuid4().hex}.bin"
        payload.write_bytes(value)
        return subprocess.run(
            [*base, *options, str(payload)], capture_output=True, timeout=60, env=env, check=False
        )
    key = options[options.index("-k") + 1]
    null = ["-Z"] if value is None else []
    return subprocess.run(
        [*base, "-K:", *null],
        input=f"{key}:\n".encode(),
        capture_output=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_debians_own_librdkafka_cannot_read_the_brokers_api_versions(
    kcat: str, lake_env: dict[str, str]
) -> None:
    result = run_kcat(kcat, "-b", lake_env["KAFKA_BOOTSTRAP_SERVERS"], "-L", "-m", "5")
    assert result.returncode != 0
    assert "Read underflow" in result.stderr  # documented: needs a newer librdkafka


def test_kcat_edge_cases_land_in_bronze_or_the_dead_letter_by_offset(
    kcat: str, newer_librdkafka: dict[str, str], lake_env: dict[str, str], tmp_path: Path
) -> None:
    settings = settings_for(lake_env)
    servers, topic = settings.kafka_bootstrap_servers, f"kcat-{uuid.uuid4().hex[:8]}"
    version = run_kcat(kcat, "-V", env=newer_librdkafka).stdout
    assert f"librdkafka {confluent_kafka.libversion()[0]}" in version, version

    _, event, _ = next(simulated_messages(PRESETS["tiny"], days=1))
    emoji = {**event, "event_id": str(uuid.uuid4()), "note": "Lahore café ☕ 🛒 مرحبا"}
    cases = [  # (name, value bytes or None for a null value, kcat options, where it must land)
        ("empty value", b"", ["-k", "customer-6"], ("dead", "empty_message")),
        ("null value with a key", None, ["-k", "customer-7"], ("dead", "empty_message")),
        ("binary garbage", bytes(range(256)) * 4, [], ("dead", "undecodable")),
        ("900 KB value", b"x" * 900_000, [], ("dead", "invalid_json")),
        ("JSON array", b'[{"event_type": "page_view"}]', [], ("dead", "contract_violation")),
        (
            "valid event with headers",
            json.dumps({**event, "event_id": str(uuid.uuid4())}).encode(),
            ["-k", "session-1", "-H", "source=kcat", "-H", "trace=abc"],
            ("events", None),
        ),
        ("unicode and emoji", json.dumps(emoji, ensure_ascii=False).encode(), [], ("events", None)),
        (
            "schema_version 2.0",
            json.dumps({**event, "event_id": str(uuid.uuid4()), "schema_version": "2.0"}).encode(),
            [],
            ("dead", "contract_violation"),
        ),
    ]
    for name, value, options, _ in cases:
        produced = kcat_produce(kcat, servers, topic, value, options, newer_librdkafka, tmp_path)
        assert produced.returncode == 0, (name, produced.stderr)

    consumed = run_kcat(
        kcat,
        "-b",
        servers,
        "-t",
        topic,
        "-p",
        "0",
        "-C",
        "-o",
        "beginning",
        "-e",
        "-f",
        "%o %S %h\\n",
        env=newer_librdkafka,
    )
    assert consumed.returncode == 0, consumed.stderr
    lines = [line.split(" ", 2) for line in consumed.stdout.splitlines()]
    assert [int(o) for o, _, _ in lines] == list(range(len(cases)))
    assert [int(size) for _, size, _ in lines][:4] == [0, -1, 1024, 900_000]  # -1: null
    assert "source=kcat" in lines[5][2] and "trace=abc" in lines[5][2]

    report = ingest(settings.lake, servers, IngestOptions(topic))
    assert report.messages == len(cases)
    landed = {}
    events = (
        DeltaTable(settings.lake.table_uri(EVENTS_TABLE))
        .to_pyarrow_table(columns=["kafka_topic", "kafka_offset", "payload"])
        .to_pylist()
    )
    for row in events:
        if row["kafka_topic"] == topic:
            landed[row["kafka_offset"]] = ("events", None, row["payload"])
    dead = (
        DeltaTable(settings.lake.table_uri(DEAD_LETTER_TABLE))
        .to_pyarrow_table(columns=["kafka_topic", "kafka_offset", "error_kind", "reason"])
        .to_pylist()
    )
    for row in dead:
        if row["kafka_topic"] == topic:
            landed[row["kafka_offset"]] = ("dead", row["error_kind"], row["reason"])
    for offset, (name, _, _, expected) in enumerate(cases):
        assert landed[offset][:2] == expected, (name, landed[offset])
        if expected[0] == "dead":
            assert landed[offset][2], f"{name}: a dead letter without its reason"
    assert "unsupported schema_version: '2.0'" in landed[7][2]
    assert "not a JSON object" in landed[4][2]
    assert "☕ 🛒 مرحبا" in json.loads(landed[6][2])["note"]  # kept as sent
