"""Shared fixtures: an isolated data root and free ports, so tests never touch a running demo."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from lakehouse.settings import Settings

# The installed console scripts, exactly as users run them.
LAKEHOUSE = [str(Path(sys.executable).parent / "lakehouse")]
DAGSTER = str(Path(sys.executable).parent / "dagster")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated_env(data_root: Path) -> dict[str, str]:
    """Environment for a platform instance of its own: own data root, own ports."""
    env = {k: v for k, v in os.environ.items() if k not in _OVERRIDDEN}
    env.update(
        LAKEHOUSE_DATA_ROOT=str(data_root),
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
        SPARK_REMOTE=f"sc://127.0.0.1:{free_port()}",
    )
    return env


_OVERRIDDEN = {"LAKE_URI", "ERP_DB_URL", "WAREHOUSE_PATH", "DAGSTER_HOME"}


def run_cli(
    *args: str, env: dict[str, str], check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess:
    """Run the real `lakehouse` CLI in a subprocess."""
    result = subprocess.run(
        [*LAKEHOUSE, *args], check=False, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"lakehouse {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def dagster_materialize(
    select: str, env: dict[str, str], *options: str
) -> subprocess.CompletedProcess:
    """`dagster asset materialize --select <select>` on the code location, in a subprocess."""
    return subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "orchestration.definitions", "--select", select]
        + list(options),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def cli_json(*args: str, env: dict[str, str], check: bool = True, timeout: float = 180) -> dict:
    return json.loads(run_cli(*args, "--json", env=env, check=check, timeout=timeout).stdout)


@pytest.fixture(scope="session")
def platform_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Embedded services started once for the test session, stopped at the end."""
    env = isolated_env(tmp_path_factory.mktemp("platform"))
    run_cli("services", "up", env=env)
    try:
        yield env
    finally:
        run_cli("services", "down", env=env, check=False)


@pytest.fixture(scope="session")
def platform_settings(platform_env: dict[str, str]) -> Settings:
    return Settings(
        data_root=platform_env["LAKEHOUSE_DATA_ROOT"],
        kafka_bootstrap_servers=platform_env["KAFKA_BOOTSTRAP_SERVERS"],
        spark_remote=platform_env["SPARK_REMOTE"],
    )


@pytest.fixture(scope="session")
def spark(platform_settings: Settings) -> Iterator:
    from lakehouse.spark import spark_session

    session = spark_session(platform_settings)
    yield session
    # Close before the server goes down: an open Spark Connect client runs cleanup RPCs at
    # interpreter exit and retries them for minutes against a server that is gone.
    session.stop()


def ingest_all(env: dict[str, str], events: int) -> int:
    """Ingest until every produced event is in bronze (a loaded machine can end a drain early;
    ingestion is exactly once, so another drain only adds what the first one missed)."""
    written = 0
    for _ in range(3):
        written += cli_json("ingest", env=env)["events_written"]
        if written >= events:
            break
    assert written >= events, (written, events)
    return written


@pytest.fixture(scope="session")
def gold_world(
    platform_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The environment of a tiny world built through bronze, silver, gold and the models (whose
    outputs the marts read)."""
    root = tmp_path_factory.mktemp("gold-world")
    (root / "dagster").mkdir()
    env = {
        **platform_env,
        "LAKEHOUSE_DATA_ROOT": str(root),
        "KAFKA_EVENTS_TOPIC": f"gold-world-{root.name}",
        "DAGSTER_HOME": str(root / "dagster"),
    }
    cli_json("generate", "--preset", "tiny", "--no-events", env=env)
    ingest_all(env, cli_json("produce", "--preset", "tiny", env=env)["events"])
    cli_json("extract", env=env)
    cli_json("transform", env=env)
    cli_json("ml", "train", env=env)
    return env


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
