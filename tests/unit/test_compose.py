"""docker-compose.yml is validated by a real compose implementation (no Docker engine here)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from lakehouse.core.settings import PROJECT_ROOT, env_var_names

# Read by the S3 client libraries themselves (delta-rs, boto, Hadoop S3A), not by our settings.
STANDARD_CLIENT_VARS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}


def compose(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed; `./run test` installs it (apt)")
    return subprocess.run(
        [binary, "-f", str(PROJECT_ROOT / "docker-compose.yml"), *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},  # no .env overrides from the caller
    )


@pytest.fixture(scope="module")
def resolved() -> dict:
    result = compose("config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_valid() -> None:
    result = compose("config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_stack_has_the_production_services(resolved: dict) -> None:
    services = resolved["services"]
    assert {
        "kafka",
        "minio",
        "postgres",
        "spark-connect",
        "dagster-code",
        "dagster-webserver",
        "dagster-daemon",
        "superset",
        "redis",
        "stream-processor",
    } <= set(services)
    assert "delta-spark" in " ".join(services["spark-connect"]["command"])
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    long_running = {name for name, svc in services.items() if svc.get("restart") != "no"}
    assert all("healthcheck" in services[name] for name in long_running)
    assert set(resolved["volumes"]) >= {"kafka-data", "minio-data", "postgres-data"}


def test_project_is_configured_only_through_settings_variables(resolved: dict) -> None:
    known = env_var_names() | STANDARD_CLIENT_VARS
    project_services = {
        name: svc
        for name, svc in resolved["services"].items()
        if svc.get("image", "").startswith("retail-lakehouse")
    }
    assert set(project_services) >= {
        "dagster-code",
        "dagster-webserver",
        "dagster-daemon",
        "superset",
    }
    for name, svc in project_services.items():
        unknown = set(svc.get("environment", {})) - known
        assert not unknown, f"{name} sets variables the settings module does not read: {unknown}"
    # Every service of the project points at the stack's real services, not at loopback.
    env = project_services["dagster-code"]["environment"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["SPARK_REMOTE"].startswith("sc://spark-connect:")
    assert env["LAKE_URI"].startswith("s3://")
    assert env["ERP_DB_URL"].startswith("postgresql")


def test_compose_instance_matches_what_the_cli_writes() -> None:
    """The stack's dagster.yaml has the storage, pools and telemetry the CLI writes for a
    PostgreSQL instance (plus the queued run coordinator of a long-running deployment)."""
    from lakehouse.core.settings import Settings
    from orchestration.lib.instance import instance_config

    deployed = yaml.safe_load((PROJECT_ROOT / "deploy/dagster/dagster.yaml").read_text())
    settings = Settings(dagster_postgres_url="postgresql+psycopg2://u:p@db:5432/dagster")
    written = instance_config(settings)
    assert {k: deployed[k] for k in written} == written
