"""Superset and the DuckDB files it reads, configured from the settings module."""

import dagster as dg

from lakehouse.settings import Settings, get_settings


class BiResource(dg.ConfigurableResource):
    """Where the warehouse files are (WAREHOUSE_PATH) and the Superset to provision."""

    warehouse_path: str
    superset_url: str

    def settings(self) -> Settings:
        return get_settings().model_copy(
            update={"warehouse_path": self.warehouse_path, "superset_url": self.superset_url}
        )


def bi_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "bi": BiResource(
            warehouse_path=str(settings.warehouse_path), superset_url=settings.superset_url
        )
    }
