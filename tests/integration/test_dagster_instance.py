"""The Dagster instance the CLI writes: SQLite by default, the local PostgreSQL server when
DAGSTER_POSTGRES_URL is set (runs and their events land in its tables)."""

from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from lakehouse.core.settings import Settings, SettingsError, load_settings
from orchestration.lib.instance import write_instance_config

pytestmark = pytest.mark.integration


@dg.op
def say_hello() -> str:
    return "hello"


@dg.job
def hello() -> None:
    say_hello()


def test_sqlite_by_default(tmp_path: Path) -> None:
    settings = Settings(data_root=tmp_path)
    write_instance_config(settings)
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert hello.execute_in_process(instance=instance).success


def test_postgresql_when_configured(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres_url.replace("postgresql+psycopg://", "postgresql+psycopg2://")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", url)
    settings = Settings(data_root=tmp_path)
    config = write_instance_config(settings)
    assert url not in config.read_text() and "DAGSTER_POSTGRES_URL" in config.read_text()
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = hello.execute_in_process(instance=instance)
    assert result.success
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        status = conn.execute(
            sa.text("SELECT status FROM runs WHERE run_id = :id"), {"id": result.run_id}
        ).scalar_one()
        events = conn.execute(
            sa.text("SELECT count(*) FROM event_logs WHERE run_id = :id"), {"id": result.run_id}
        ).scalar_one()
    engine.dispose()
    assert status == "SUCCESS" and events > 0


def test_a_psycopg3_url_is_refused_with_the_form_to_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", "postgresql+psycopg://u:secret@h/db")
    with pytest.raises(SettingsError, match="needs the psycopg2 driver") as error:
        load_settings()
    assert "secret" not in str(error.value)
