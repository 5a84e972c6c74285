"""Resources of the bi domain: Superset and the warehouse files it reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from lakehouse.core.lake import Lake
from lakehouse.core.settings import Settings
from warehouse.superset.admin import SupersetConfig

if TYPE_CHECKING:
    from warehouse.live import LiveRefresh
    from warehouse.superset.admin import Applied


class LiveWarehouseResource(dg.ConfigurableResource):
    """The live DuckDB file under WAREHOUSE_PATH (real-time and data-quality dashboards)."""

    warehouse_path: str

    def refresh(self, lake: Lake) -> LiveRefresh:
        from warehouse.live import refresh_live

        return refresh_live(lake, Path(self.warehouse_path))


PATH_FIELDS = ("home", "warehouse_path", "dashboards_dir", "venv", "log_dir")


class SupersetResource(dg.ConfigurableResource):
    """The Superset to provision (SUPERSET_*): its URL, admin, metadata database, environment
    and the dashboards as code. The secret key and admin password come from the environment
    (SUPERSET_SECRET_KEY, SUPERSET_ADMIN_PASSWORD) or, embedded, from `<home>/secrets.json`."""

    url: str
    admin_user: str
    home: str
    metadata_db_url: str
    warehouse_path: str
    dashboards_dir: str
    venv: str
    log_dir: str
    embedded: bool
    secret_key: str | None = None  # dg.EnvVar("SUPERSET_SECRET_KEY") when set
    admin_password: str | None = None  # dg.EnvVar("SUPERSET_ADMIN_PASSWORD") when set

    def apply(self, progress: Callable[[str], None]) -> Applied:
        """Migrate Superset's metadata and apply the dashboards-as-code bundle."""
        from warehouse.superset.admin import Superset

        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(SupersetConfig)}
        paths = {name: Path(values[name]) for name in PATH_FIELDS}
        return Superset(SupersetConfig(**(values | paths))).apply(progress)


def bi_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    config = SupersetConfig.from_settings(settings)
    values = {
        f.name: str(getattr(config, f.name)) if f.name in PATH_FIELDS else getattr(config, f.name)
        for f in dataclasses.fields(SupersetConfig)
        if f.name not in ("secret_key", "admin_password")
    }
    return {
        "live": LiveWarehouseResource(warehouse_path=str(settings.warehouse_path)),
        "superset": SupersetResource(
            **values,
            # secrets stay in the environment: Dagster reads them at run time, never shows them
            secret_key=dg.EnvVar("SUPERSET_SECRET_KEY") if config.secret_key else None,
            admin_password=dg.EnvVar("SUPERSET_ADMIN_PASSWORD") if config.admin_password else None,
        ),
    }
