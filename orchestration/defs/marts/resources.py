"""Resources of the marts domain: the dbt CLI and the warehouse it publishes to."""

from contextlib import AbstractContextManager
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from lakehouse.core.lake import Lake
from lakehouse.core.settings import Settings
from orchestration.defs.marts.project import dbt_project
from warehouse.marts import PendingBuild, dbt_executable, publishing


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse directory (WAREHOUSE_PATH): the published file plus kept builds."""

    path: str

    def publishing(self, lake: Lake) -> AbstractContextManager[PendingBuild]:
        """A new build of the warehouse, published when the block completes (see
        warehouse.marts.publishing)."""
        return publishing(lake, Path(self.path))


def marts_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
        "warehouse": WarehouseResource(path=str(settings.warehouse_path)),
    }
