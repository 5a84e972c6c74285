"""The fault suite's lake rows, on a copy of the tiny world (tests/conftest.py): Spark Connect
killed with SIGKILL while a step publishes, and a full disk under the lake. Each run is the real
CLI in a process of its own; a thread reads the tables all along. Afterwards the tables equal a
clean run's (checksums), no reader ever saw a partial batch, and nothing needed cleaning up."""

from __future__ import annotations

import errno
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from deltalake import DeltaTable

from lakehouse.core.spark import retry_backoffs
from lakehouse.devstack.services import ServiceManager, define_services
from tests.conftest import LAKEHOUSE, World, free_port, replace_settings, run_cli_process
from tests.integration.test_silver_gold import KEYS, checksum

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# the biggest step, rebuilt whole: still writing when Sail dies, and enough to fill a disk
REBUILD = ("transform", "--step", "silver.events", "--full")


class Readers(threading.Thread):
    """Reads every checked table's row count at its newest version, over and over."""

    def __init__(self, world: World):
        super().__init__(daemon=True)
        self.world = world
        self.seen: dict[str, set[int]] = {name: set() for name in KEYS}
        self.reads = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.1):
            for name in KEYS:
                uri = self.world.settings.lake.table_uri(name)
                self.seen[name].add(DeltaTable(uri).to_pyarrow_dataset().count_rows())
                self.reads += 1

    def __enter__(self) -> Readers:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.join(timeout=30)


def checksums(world: World) -> dict[str, str]:
    return {name: checksum(world, name, key) for name, key in KEYS.items()}


def row_counts(world: World) -> dict[str, set[int]]:
    return {name: {world.table(name).num_rows} for name in KEYS}


@pytest.fixture(scope="module")
def faulty(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A copy of the tiny world with a Spark Connect server of its own (the tests kill it)."""
    copy = world.copy(
        tmp_path_factory.mktemp("lake-faults") / "root",
        spark_remote=f"sc://127.0.0.1:{free_port()}",
    )
    server = spark_server(copy)
    server.up()
    try:
        yield copy
    finally:
        server.down()


def spark_server(world: World) -> ServiceManager:
    services = [s for s in define_services(world.settings) if s.name == "spark"]
    return ServiceManager(world.settings, services)


def new_files(table: Path, known: set[Path]) -> set[Path]:
    return set(table.rglob("*.parquet")) - known


def test_spark_connect_killed_mid_publish_then_the_run_recovers_to_a_clean_runs_tables(
    faulty: World, world: World
) -> None:
    clean = checksums(world)
    table = faulty.root / "lake" / "silver" / "events"
    known = set(table.rglob("*.parquet"))
    server = spark_server(faulty)
    with Readers(faulty) as readers:
        run = subprocess.Popen(
            [*LAKEHOUSE, *REBUILD],
            env=faulty.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 240
        while not new_files(table, known) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert new_files(table, known), "silver.events was never written"
        sail = server.running_process(server.get("spark"))
        assert sail is not None
        sail.kill()  # SIGKILL while Sail writes the table's files (its commit comes after them)
        sail.wait(10)
        # down for longer than the client's retries last, so the step fails and Dagster's
        # retry takes over (a server back sooner is ridden out by the client alone)
        time.sleep(sum(retry_backoffs(faulty.settings.spark_unavailable_seconds)) + 1)
        server.up()  # what an operator (or a supervisor) does
        stdout, stderr = run.communicate(timeout=400)

    assert run.returncode == 0, stdout + stderr
    # every wait said what it waited for: the client's retries, then Dagster's
    assert "does not answer" in stderr and "retry 1 of" in stderr, stderr
    assert "Dagster retries it in" in stderr, stderr
    assert checksums(faulty) == clean
    assert readers.reads > len(KEYS), "the readers never ran"
    assert readers.seen == row_counts(world)  # never a partial batch


@contextmanager
def small_disk(at: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of `size_bytes` mounted at `at` (skips where mounting is not allowed)."""
    at.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(at)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"a size-limited disk needs `mount -t tmpfs` (root): {made.stderr.strip()}")
    try:
        yield at
    finally:
        subprocess.run(["umount", "-l", str(at)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """Take all of `disk` but about `leave_bytes` with a file of its own."""
    filler = disk / f"filler-{uuid.uuid4().hex[:8]}"
    chunk = bytes(1 << 20)
    with open(filler, "wb", buffering=0) as f:
        try:
            while (free := shutil.disk_usage(disk).free - leave_bytes) > 0:
                f.write(chunk[:free])
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


def disk_usage(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_a_full_disk_fails_the_step_at_once_and_the_next_run_recovers(
    faulty: World, world: World, tmp_path: Path
) -> None:
    lake_bytes = disk_usage(faulty.root / "lake")
    with small_disk(tmp_path / "disk", lake_bytes + (128 << 20)) as disk:
        subprocess.run(["cp", "-a", str(faulty.root / "lake"), str(disk)], check=True)
        lake = disk / "lake"
        on_disk = replace(faulty, settings=replace_settings(faulty.settings, lake_uri=str(lake)))
        env = {**on_disk.env, "LAKE_URI": str(lake)}
        clean = checksums(world)
        fillers = [fill(disk, leave_bytes=2 << 20)]

        with Readers(on_disk) as readers:
            started = time.monotonic()
            full = run_cli_process(*REBUILD, env=env)
            failed_in = time.monotonic() - started
        assert full.returncode == 1, full.stdout + full.stderr
        assert "the disk under" in full.stderr and "is full" in full.stderr, full.stderr
        assert "No space left on device" in full.stderr
        assert "Dagster retries it" not in full.stderr  # not transient: no retries
        assert failed_in < 120, failed_in  # Dagster's three retries took 157 s before
        assert checksums(on_disk) == clean
        assert readers.seen == row_counts(world)

        # ingestion too: nothing committed, then every event exactly once
        topic = f"faults-{uuid.uuid4().hex[:8]}"
        env_topic = {**env, "KAFKA_EVENTS_TOPIC": topic}
        run_cli_process("produce", "--events", "2000", env=env_topic).check_returncode()
        bronze_rows = on_disk.table("bronze.events").num_rows
        fillers.append(fill(disk, leave_bytes=0))
        ingest = run_cli_process("ingest", env=env_topic, timeout=120)
        assert ingest.returncode == 1, ingest.stdout + ingest.stderr
        assert "is full" in ingest.stderr, ingest.stderr
        assert on_disk.table("bronze.events").num_rows == bronze_rows

        for filler in fillers:  # space is freed; nothing else is touched
            filler.unlink()
        again = run_cli_process(*REBUILD, env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert checksums(on_disk) == clean
        run_cli_process("ingest", env=env_topic, timeout=120).check_returncode()
        assert on_disk.table("bronze.events").num_rows == bronze_rows + 2000
