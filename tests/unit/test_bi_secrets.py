"""Superset's secret key and admin password: from the environment, or generated once for the
embedded Superset and kept under the data root, owner-only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lakehouse.core.settings import Settings
from warehouse.superset.admin import SupersetConfig, SupersetError, secrets_of


def _secrets(settings: Settings):  # noqa: ANN202
    return secrets_of(SupersetConfig.from_settings(settings))


def test_generated_once_kept_owner_only_and_reused(tmp_path: Path) -> None:
    key, first = _secrets(Settings(data_root=tmp_path))
    assert first.generated and len(first.password) >= 20 and len(key) >= 48
    assert first.password != "admin"
    assert stat.S_IMODE(first.stored_in.stat().st_mode) == 0o600
    again_key, again = _secrets(Settings(data_root=tmp_path))
    assert (again_key, again.password) == (key, first.password)
    assert not again.generated  # shown once


def test_the_environment_wins_and_nothing_is_stored(tmp_path: Path) -> None:
    settings = Settings(
        data_root=tmp_path, superset_secret_key="k" * 40, superset_admin_password="from-vault"
    )
    key, credentials = _secrets(settings)
    assert (key, credentials.password, credentials.stored_in) == ("k" * 40, "from-vault", None)
    assert not (tmp_path / "superset" / "secrets.json").exists()


def test_an_external_superset_needs_its_secrets_from_the_environment(tmp_path: Path) -> None:
    settings = Settings(data_root=tmp_path, superset_url="http://superset:8088")
    with pytest.raises(SupersetError, match="SUPERSET_ADMIN_PASSWORD"):
        _secrets(settings)
