"""Resources of the marts domain: the dbt CLI and the warehouse it publishes to."""

import dagster as dg
from dagster_dbt import DbtCliResource

from lakehouse.settings import Settings
from orchestration.defs.marts.project import dbt_project
from warehouse.marts import dbt_executable


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse directory (WAREHOUSE_PATH): published file plus kept builds."""

    path: str


def marts_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
        "warehouse": WarehouseResource(path=str(settings.warehouse_path)),
    }
