"""The Dagster instance under DAGSTER_HOME: SQLite storage by default, PostgreSQL (runs, event
logs, schedules) when DAGSTER_POSTGRES_URL is set; concurrency pools limited to one step each.
The URL stays in the environment; the file only names the variable, so no password lands on
disk."""

from pathlib import Path

import yaml

from lakehouse.core.settings import Settings


def instance_config(settings: Settings) -> dict:
    # One run at a time per concurrency pool: each Spark step and the live file have a pool of
    # their own, so the nightly run, streaming refreshes and backfills take turns at a table.
    config: dict = {
        "telemetry": {"enabled": False},
        "concurrency": {"pools": {"default_limit": 1}},
    }
    if settings.dagster_postgres_url:
        config["storage"] = {"postgres": {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}}
    return config


def write_instance_config(settings: Settings) -> Path:
    """Write `<DAGSTER_HOME>/dagster.yaml` for these settings (idempotent); its path."""
    home = Path(settings.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    text = "# written by the lakehouse CLI from the settings (DAGSTER_POSTGRES_URL)\n"
    text += yaml.safe_dump(instance_config(settings), sort_keys=False)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path
