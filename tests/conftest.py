"""Shared fixtures: the embedded services once per session, free ports and isolated data roots
(tests never touch a running demo), and one tiny world built once through Dagster (by one of
the test workers), copied for each worker and again for each module that changes it."""

from __future__ import annotations

import datetime as dt
import faulthandler
import json
import os
import pickle
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from filelock import FileLock, Timeout

from lakehouse.core.settings import Settings, env_var_names
from lakehouse.devstack.services import STORE_PORTS, free_port_block

# Two test workers share two cores. OpenMP's threads (LightGBM's, implicit's, scikit-learn's)
# spin while they wait for each other, for a core the other worker holds: next to one busy
# process, test_ml_ranker and test_ml_feedback took 75-102 s spinning and 25 s sleeping (21 s
# alone). Read when OpenMP loads, so set before any test module imports those libraries; the
# CLI and Dagster processes the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The installed console scripts, exactly as users run them.
LAKEHOUSE = [str(Path(sys.executable).parent / "lakehouse")]
DAGSTER = str(Path(sys.executable).parent / "dagster")


def free_port() -> int:
    """A free loopback port below the ephemeral range: a port the kernel hands out for port 0
    can be taken by any outgoing connection before the server binds it (a broker's connection
    to its object store once took the port chosen for a test's Redis)."""
    return free_port_block(1)


def isolated_env(data_root: Path) -> dict[str, str]:
    """Environment for a platform instance of its own: own data root, own ports."""
    env = {k: v for k, v in os.environ.items() if k not in _OVERRIDDEN}
    env.update(
        LAKEHOUSE_DATA_ROOT=str(data_root),
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
        SPARK_REMOTE=f"sc://127.0.0.1:{free_port()}",
        # ten ports from this one, none of them an ephemeral port a connection may take
        LAKEHOUSE_BROKER_STORE_URL=f"http://127.0.0.1:{free_port_block(STORE_PORTS)}",
        LAKEHOUSE_REDIS_PORT=str(free_port()),
    )
    return env


_OVERRIDDEN = {"LAKE_URI", "ERP_DB_URL", "WAREHOUSE_PATH", "DAGSTER_HOME", "KAFKA_EVENTS_TOPIC"}


@dataclass
class CliResult:
    """What a run of the CLI printed and returned (the fields of a CompletedProcess)."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str], check: bool = True) -> CliResult:
    """Run the real `lakehouse` CLI in this process with the environment `env` (its commands
    then load the code location once per test session, not once per call)."""
    from typer.testing import CliRunner

    from lakehouse.cli import app

    unset = {k: None for k in os.environ if k not in env}
    result = CliRunner().invoke(app, list(args), env={**unset, **env})
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        stderr += f"\n{trace}"
    outcome = CliResult(result.exit_code, result.stdout, stderr)
    if check and outcome.returncode != 0:
        raise AssertionError(
            f"lakehouse {' '.join(args)} exited {outcome.returncode}\n"
            f"stdout:\n{outcome.stdout}\nstderr:\n{outcome.stderr}"
        )
    return outcome


def cli_json(*args: str, env: dict[str, str], check: bool = True) -> Any:
    return json.loads(run_cli(*args, "--json", env=env, check=check).stdout)


def run_cli_process(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    """The installed `lakehouse` console script in a process of its own, as users run it."""
    return subprocess.run(
        [*LAKEHOUSE, *args], check=False, env=env, capture_output=True, text=True, timeout=timeout
    )


# Rough seconds each of the longest modules took in `./run test` (2026-12-07, setup included;
# test_superset's include building the tiny world). Only the order in which the two workers
# take modules depends on them: the longest first, so that one worker builds the world while
# the other runs the longest module without it, and the short ones fill the ends.
MODULE_SECONDS = {
    "tests.browser.test_superset": 370,
    "tests.integration.test_dagster_live": 190,
    "tests.integration.test_marts": 120,
    "tests.integration.test_s3_lake": 90,
    "tests.integration.test_erp_only": 85,
    "tests.integration.test_lake_faults": 85,
    "tests.integration.test_silver_gold": 75,
    "tests.integration.test_broker_reset": 75,
    "tests.integration.test_ingest": 65,
    "tests.integration.test_marts_rfm": 40,
    "tests.integration.test_api": 40,
    "tests.integration.test_ml": 30,
    "tests.integration.test_bronze_assets": 25,
    "tests.integration.test_experiments": 25,
    "tests.unit.test_ml_ranker": 20,
}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With pytest-xdist (`./run test` runs two workers, `--no-loadscope-reorder`): each module
    stays whole on one worker, so its module fixtures are built once, and the modules are
    queued longest first (`MODULE_SECONDS`; the others after them, in their own order)."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    items.sort(key=lambda item: -MODULE_SECONDS.get(item.module.__name__, 0))  # stable


@pytest.fixture(scope="session")
def platform_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Embedded services started once for the test session (through the CLI), stopped at the
    end."""
    env = isolated_env(tmp_path_factory.mktemp("platform"))
    run_cli("services", "up", env=env)
    try:
        yield env
    finally:
        run_cli("services", "down", env=env, check=False)


@pytest.fixture
def lake_env(platform_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The shared services, but a lake of this test's own."""
    return {**platform_env, "LAKE_URI": str(tmp_path / "lake")}


def settings_of(env: dict[str, str]) -> Settings:
    """The settings a CLI run with the environment `env` would see."""
    return Settings(**{k: v for k, v in env.items() if k in env_var_names()})


@pytest.fixture(scope="session")
def platform_settings(platform_env: dict[str, str]) -> Settings:
    return settings_of(platform_env)


@pytest.fixture(scope="session")
def spark(platform_settings: Settings) -> Iterator:
    """A Spark Connect session of the tests' own (every step runs on a session of its own)."""
    from lakehouse.core.spark import spark_session, stop_session

    session = spark_session(platform_settings.spark_remote)
    yield session
    # Close before the server goes down: an open Spark Connect client runs cleanup RPCs at
    # interpreter exit and retries them for minutes against a server that is gone.
    stop_session(session)


# -- the tiny world --------------------------------------------------------------------------

WORLD_TIMEOUT = 1_200  # seconds to build the tiny world (about 250 s here, 420 s under load)
SPLIT = "2025-09-11"  # the ERP arrives in two halves: master data changes in between (SCD2)
FAULTS = dict(
    duplicates=0.03, late=0.05, malformed=0.01, orphans=0.01, future=0.01, negative_quantities=0.02
)


@dataclass
class World:
    """A data root built through the platform's own Dagster runs, and how it was built."""

    settings: Settings
    produced: dict[str, Any] = field(default_factory=dict)  # the producer's report
    runs: dict[str, Any] = field(default_factory=dict)  # what each build run reported

    @property
    def root(self) -> Path:
        return self.settings.data_root

    @property
    def acks(self) -> Path:
        """Every message the broker acknowledged: partition, offset, kind, event id."""
        return self.root / "acks.csv"

    @property
    def env(self) -> dict[str, str]:
        """The environment of the CLI on this world."""
        return {
            **{k: v for k, v in os.environ.items() if k not in _OVERRIDDEN},
            "LAKEHOUSE_DATA_ROOT": str(self.root),
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
            "KAFKA_EVENTS_TOPIC": self.settings.events_topic,
            "SPARK_REMOTE": self.settings.spark_remote,
            "LAKEHOUSE_BROKER_STORE_URL": self.settings.broker_store_url,
        }

    def table(self, name: str, **options: Any) -> pa.Table:
        return self.settings.lake.open(name).to_pyarrow_table(**options)

    def run(self, selection: Any, **options: Any) -> Any:
        """Run assets through Dagster in this process (as the CLI does); fail on a failed run."""
        from orchestration.lib.runs import run_assets

        outcome = run_assets(self.settings, selection, **options)
        assert outcome.success, outcome.failures
        return outcome

    def copy(self, to: Path, **settings: Any) -> World:
        """A copy of the data root (lake, ERP database, warehouse, Dagster instance) to change
        without touching the shared world."""
        # cp -a keeps hard links: the published warehouse is a link to its build file
        subprocess.run(["cp", "-a", str(self.root), str(to)], check=True)
        moved = replace_settings(self.settings, data_root=to, **settings)
        return replace(self, settings=moved)


def replace_settings(settings: Settings, **changes: Any) -> Settings:
    """The same settings with other values; what hangs off the data root moves with it."""
    values = settings.model_dump(
        exclude={"lake_uri", "erp_db_url", "warehouse_path", "dagster_home"}
    )
    values.pop("superset_metadata_db_url")
    return Settings(**(values | changes))


def ingest_everything(world: World, events: int) -> int:
    """Ingest until every produced event is in bronze (a loaded machine can end a drain early;
    ingestion is exactly once, so another drain only adds what the first one missed)."""
    import dagster as dg

    written = 0
    for _ in range(3):
        outcome = world.run(
            [dg.AssetKey(["bronze", "events"]), dg.AssetKey(["bronze", "events_dead_letter"])]
        )
        written += outcome.materialized["bronze.events"]["ingest_report"]["events_written"]
        if written >= events:
            break
    assert written >= events, (written, events)
    return written


def build_world(settings: Settings) -> World:
    """The tiny world as the platform builds it: the ERP up to SPLIT and the whole clickstream
    (every fault knob on) ingested, extracted and transformed, the incremental mart published;
    then the rest of the ERP extracted and transformed, the models trained and the marts
    built on (carrying the incremental mart on)."""
    import dagster as dg

    from generator.events import simulated_messages
    from generator.generate import generate
    from generator.world import PRESETS
    from streaming.producer import Faults, produce

    world = World(settings)
    scale = PRESETS["tiny"]
    split = (dt.date.fromisoformat(SPLIT) - scale.start).days
    timings: dict[str, float] = {}

    def timed(name: str, action: Any) -> Any:
        started = time.monotonic()
        result = action()
        timings[name] = round(time.monotonic() - started, 1)
        return result

    generated = settings.generated_dir
    timed("generate", lambda: generate(scale, settings.erp_db_url, generated, until_day=split))
    report = timed(
        "produce",
        lambda: produce(
            settings.kafka_bootstrap_servers,
            settings.events_topic,
            simulated_messages(scale),
            faults=Faults(**FAULTS),
            ack_log=world.acks,
        ),
    )
    world.produced = report.to_dict()
    timed("ingest", lambda: ingest_everything(world, report.events))
    erp = dg.AssetSelection.groups("bronze") - dg.AssetSelection.assets(
        ["bronze", "events"], ["bronze", "events_dead_letter"]
    )
    transform = dg.AssetSelection.groups("silver", "gold")
    timed("extract", lambda: world.run(erp))
    world.runs["first transform"] = timed("transform", lambda: world.run(transform))
    world.runs["marts +mart_daily_kpis"] = timed(
        "marts (incremental mart)", lambda: world.run(_dbt_selection("+mart_daily_kpis"))
    )
    timed("generate the rest", lambda: generate(scale, settings.erp_db_url, generated))
    timed("extract again", lambda: world.run(erp))
    world.runs["second transform"] = timed("transform again", lambda: world.run(transform))
    world.runs["training"] = timed(
        "train", lambda: world.run(dg.AssetSelection.groups("ml", "experiments", "serving"))
    )
    world.runs["marts"] = timed("marts", lambda: world.run(dg.AssetSelection.groups("marts")))
    world.runs["timings"] = timings
    return world


def _dbt_selection(select: str) -> Any:
    from dagster_dbt import build_dbt_asset_selection

    from orchestration.defs.marts.assets import dbt_marts

    return build_dbt_asset_selection([dbt_marts], dbt_select=select)


@pytest.fixture(scope="session")
def world(
    platform_settings: Settings, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> World:
    """The tiny world: built once per test run by the first worker that needs it (the other
    waits for it), then a copy of it per worker, on that worker's services (read it; copy it
    to change it)."""
    if worker_id == "master":  # one process (no pytest-xdist): nothing to share
        return _build_world(platform_settings, tmp_path_factory.mktemp("world"))
    shared = tmp_path_factory.getbasetemp().parent / "world"  # the run's, common to the workers
    shared.mkdir(exist_ok=True)
    built, failed = shared / "world.pickle", shared / "failed.txt"
    try:
        with FileLock(shared / "build.lock", timeout=WORLD_TIMEOUT + 60):
            if failed.exists():
                pytest.fail(
                    f"the tiny world failed to build on another worker:\n{failed.read_text()}"
                )
            if not built.exists():
                try:
                    world = _build_world(platform_settings, shared / f"root-{worker_id}")
                except BaseException:
                    failed.write_text(traceback.format_exc())
                    raise
                built.write_bytes(
                    pickle.dumps(
                        (world.root, world.settings.events_topic, world.produced, world.runs)
                    )
                )
    except Timeout:
        waited = WORLD_TIMEOUT + 60
        pytest.fail(f"waited {waited} s for the tiny world another worker builds in {shared}")
    root, topic, produced, runs = pickle.loads(built.read_bytes())
    # the built world stays as it was, for the other worker to copy: each works on a copy. Its
    # topic is on the builder's broker; tests that produce or ingest use topics of their own
    on_mine = replace_settings(platform_settings, data_root=root, events_topic=topic)
    return World(on_mine, produced, runs).copy(tmp_path_factory.mktemp("world") / "root")


def _build_world(platform_settings: Settings, root: Path) -> World:
    settings = replace_settings(
        platform_settings, data_root=root, events_topic=f"world-{uuid.uuid4().hex[:8]}"
    )
    started = time.monotonic()
    # tests are timed without their fixtures (timeout_func_only): a build that hangs ends the
    # worker with every thread's stack rather than waiting for CI's limit
    faulthandler.dump_traceback_later(WORLD_TIMEOUT, exit=True)
    try:
        built = build_world(settings)
    finally:
        faulthandler.cancel_dump_traceback_later()
    print(f"\ntiny world built in {time.monotonic() - started:.0f}s: {built.runs['timings']}")
    return built


@pytest.fixture(scope="module")
def world_copy(world: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    """A copy of the tiny world for one module to change."""
    return world.copy(tmp_path_factory.mktemp("world-copy") / "root")


# The machines run PostgreSQL with trust auth; tests make a database of their own on it.
POSTGRES_ADMIN_URL = os.environ.get(
    "LAKEHOUSE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh, empty database on the local PostgreSQL server, dropped afterwards."""
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"lakehouse_test_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"the local PostgreSQL server ({POSTGRES_ADMIN_URL}) is needed: {exc}")
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
