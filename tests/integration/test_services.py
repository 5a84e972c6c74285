"""`lakehouse services` against the real tansu and Sail processes."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.conftest import cli_json, isolated_env, run_cli

pytestmark = pytest.mark.integration


def _listening(pid: int) -> set[tuple[str, int]]:
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }


def _port(env: dict[str, str], var: str) -> int:
    return int(env[var].rsplit(":", 1)[1])


def test_up_is_idempotent_and_down_stops_everything(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    kafka_port, spark_port = _port(env, "KAFKA_BOOTSTRAP_SERVERS"), _port(env, "SPARK_REMOTE")
    try:
        first = {s["name"]: s for s in cli_json("services", "up", env=env)["services"]}
        assert set(first) == {"broker-store", "broker", "spark", "redis"}
        for service in first.values():
            assert service["healthy"] and service["running"] and service["started"]
            assert service["startup_seconds"] > 0
            assert (tmp_path / "run" / f"{service['name']}.pid").read_text().strip() == str(
                service["pid"]
            )
            assert Path(service["log"]).parent == tmp_path / "logs"
        assert ("127.0.0.1", kafka_port) in _listening(first["broker"]["pid"])
        assert ("127.0.0.1", spark_port) in _listening(first["spark"]["pid"])
        store_port = _port(env, "LAKEHOUSE_BROKER_STORE_URL")
        assert ("127.0.0.1", store_port) in _listening(first["broker-store"]["pid"])
        assert (tmp_path / "broker-store").is_dir()  # the broker's object store

        second = {s["name"]: s for s in cli_json("services", "up", env=env)["services"]}
        for name, service in second.items():
            assert service["pid"] == first[name]["pid"]
            assert not service["started"] and service["detail"] == "already running"

        status = {s["name"]: s for s in cli_json("services", "status", env=env)["services"]}
        assert all(s["healthy"] and s["rss_mb"] > 0 for s in status.values())

        cli_json("services", "down", env=env)
        for service in first.values():
            assert (
                not psutil.pid_exists(service["pid"])
                or psutil.Process(service["pid"]).status() == psutil.STATUS_ZOMBIE
            )
        assert not list((tmp_path / "run").glob("*.pid"))
        stopped = run_cli("services", "status", "--json", env=env, check=False)
        assert stopped.returncode == 1
        assert '"healthy": false' in stopped.stdout

        again = {s["name"]: s for s in cli_json("services", "up", env=env)["services"]}
        assert all(s["healthy"] and s["started"] for s in again.values())
    finally:
        run_cli("services", "down", env=env, check=False)


def test_port_taken_by_someone_else_is_a_clear_error(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", _port(env, "KAFKA_BOOTSTRAP_SERVERS")))
        squatter.listen()
        result = run_cli("services", "up", env=env, check=False)
    assert result.returncode == 1
    error = " ".join(result.stderr.split())
    assert f"port {_port(env, 'KAFKA_BOOTSTRAP_SERVERS')} on 127.0.0.1 is already in use" in error
    assert f"pid {psutil.Process().pid}" in error
    assert "KAFKA_BOOTSTRAP_SERVERS" in error
    assert not list((tmp_path / "run").glob("*.pid"))


def test_failed_start_names_the_log(tmp_path: Path) -> None:
    env = isolated_env(tmp_path) | {"LAKEHOUSE_BROKER_STORAGE": "bogus://nowhere"}
    result = run_cli("services", "up", env=env, check=False)
    assert result.returncode == 1
    error = " ".join(result.stderr.split())
    assert "Kafka broker (tansu) failed to start" in error
    assert str(tmp_path / "logs" / "broker.log") in error
    assert "UnsupportedStorageUrl" in error  # the broker's own words, from its log
    assert not (tmp_path / "run" / "broker.pid").exists()


def test_down_never_kills_a_process_it_did_not_start(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "broker.pid").write_text(f"{stranger.pid}\n")
        result = cli_json("services", "down", env=env)
        assert stranger.poll() is None, "down killed a process that is not ours"
        broker = next(s for s in result["services"] if s["name"] == "broker")
        assert broker["detail"] == "not running"
    finally:
        stranger.kill()
        stranger.wait()


def test_bad_configuration_exits_2_with_the_variable_named(tmp_path: Path) -> None:
    env = isolated_env(tmp_path) | {"SPARK_REMOTE": "localhost:15002"}
    result = run_cli("services", "status", env=env, check=False)
    assert result.returncode == 2
    assert "SPARK_REMOTE" in result.stderr and "sc://host:15002" in result.stderr
