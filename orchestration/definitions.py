"""The Dagster code location: `dagster dev -m orchestration.definitions`.

Assets, sensors and schedules live under `orchestration/defs/<domain>/`; resources shared by
every domain in `orchestration/defs/resources.py`, configured from the settings module.
"""

import dagster as dg

from lakehouse.settings import get_settings
from orchestration.defs.bronze.assets import (
    CLICKSTREAM_TOPIC,
    ERP_SOURCES,
    bronze_clickstream,
    erp_assets,
)
from orchestration.defs.bronze.sensors import clickstream_sensor, ingest_clickstream_job
from orchestration.defs.maintenance.assets import bronze_table_maintenance
from orchestration.defs.resources import default_resources

extract_erp_job = dg.define_asset_job(
    "extract_erp",
    selection=dg.AssetSelection.assets(*erp_assets),
    description="Incremental extraction of every ERP table into bronze.",
)

defs = dg.Definitions(
    assets=[
        CLICKSTREAM_TOPIC,
        *ERP_SOURCES.values(),
        bronze_clickstream,
        *erp_assets,
        bronze_table_maintenance,
    ],
    jobs=[ingest_clickstream_job, extract_erp_job],
    sensors=[clickstream_sensor],
    resources=default_resources(get_settings()),
)
