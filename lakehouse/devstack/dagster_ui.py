"""The Dagster UI for the embedded platform: `lakehouse dagster up|down|status`.

`dagster dev` (webserver, daemon for schedules and sensors, code server) on 127.0.0.1, over the
instance in DAGSTER_HOME (written from the settings first: SQLite, or PostgreSQL when
DAGSTER_POSTGRES_URL is set). Started and stopped by pid like the other embedded services.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from lakehouse.core.settings import Settings
from lakehouse.devstack.services import (
    BIND_HOST,
    Service,
    ServiceError,
    ServiceManager,
    ServiceStatus,
    check_http,
)

CODE_LOCATION = "orchestration.definitions"


def dagster_service(settings: Settings) -> Service:
    host, port = settings.dagster_endpoint
    dagster = str(Path(sys.executable).with_name("dagster"))
    return Service(
        name="dagster",
        title="Dagster UI",
        endpoint=settings.dagster_url,
        host=host,
        port=port,
        env_var="DAGSTER_URL",
        embedded=settings.dagster_is_embedded,
        command=[dagster, "dev", "-m", CODE_LOCATION, "-h", BIND_HOST, "-p", str(port)],
        owns=lambda cmd: "dev" in cmd and CODE_LOCATION in cmd and str(port) in cmd,
        # answers once the code location has loaded
        check_health=lambda t: check_http("Dagster", f"{settings.dagster_url}/server_info", t),
        env={"DAGSTER_HOME": str(settings.dagster_home)},
    )


def dagster_manager(settings: Settings) -> ServiceManager:
    """The manager of the Dagster UI (start it with `start_dagster`)."""
    return ServiceManager(settings, [dagster_service(settings)])


def start_dagster(
    settings: Settings, progress: Callable[[str], None] = lambda _: None
) -> list[ServiceStatus]:
    """Write and migrate the instance, then start `dagster dev` (idempotent). Migrating first
    matters: a fresh SQLite instance would otherwise be created by three processes at once."""
    prepare_instance(settings)
    return dagster_manager(settings).up(progress=progress)


def prepare_instance(settings: Settings) -> None:
    from orchestration.lib.instance import write_instance_config

    write_instance_config(settings)
    dagster = str(Path(sys.executable).with_name("dagster"))
    result = subprocess.run(
        [dagster, "instance", "migrate"],
        env={**os.environ, "DAGSTER_HOME": str(settings.dagster_home)},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServiceError(f"`dagster instance migrate` failed:\n{result.stderr[-2000:]}")
