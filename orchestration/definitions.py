"""The Dagster code location: `dagster dev -m orchestration.definitions`.

Assets, sensors and schedules live under `orchestration/defs/<domain>/`; resources in each
domain's `resources.py`, filled from the settings. Nothing is read when this module is imported:
Dagster calls `defs()` when it loads the code location, and the CLI and the tests call
`build_definitions(settings)` with the settings they run with.
"""

import dagster as dg

from lakehouse.core.settings import Settings, load_settings
from orchestration.defs.bi.assets import live_warehouse, superset_dashboards
from orchestration.defs.bi.resources import bi_resources
from orchestration.defs.bronze.assets import (
    CLICKSTREAM_TOPIC,
    ERP_SOURCES,
    bronze_clickstream,
    erp_assets,
)
from orchestration.defs.bronze.sensors import (
    clickstream_sensor,
    ingest_clickstream_job,
    streaming_refresh_job,
    streaming_refresh_sensor,
)
from orchestration.defs.experiments.assets import experiment_results
from orchestration.defs.experiments.resources import experiments_resources
from orchestration.defs.experiments.sensors import evaluate_experiments_job, experiment_sensor
from orchestration.defs.gold.assets import gold_assets
from orchestration.defs.maintenance.assets import bronze_table_maintenance
from orchestration.defs.maintenance.schedules import (
    maintain_bronze_job,
    nightly_maintenance_schedule,
)
from orchestration.defs.marts.assets import dbt_marts
from orchestration.defs.marts.resources import marts_resources
from orchestration.defs.ml.assets import ml_assets
from orchestration.defs.ml.resources import ml_resources
from orchestration.defs.monitoring.assets import model_drift
from orchestration.defs.monitoring.resources import monitoring_resources
from orchestration.defs.platform.schedules import nightly_refresh_job, nightly_schedule
from orchestration.defs.platform.sensors import run_failure_sensor
from orchestration.defs.resources import resources
from orchestration.defs.serving.assets import serving_snapshot
from orchestration.defs.silver.assets import silver_assets
from orchestration.lib.spark_steps import daily_partitions

extract_erp_job = dg.define_asset_job(
    "extract_erp",
    selection=dg.AssetSelection.assets(*erp_assets),
    description="Incremental extraction of every ERP table into bronze.",
)

build_marts_job = dg.define_asset_job(
    "build_marts",
    selection=dg.AssetSelection.groups("marts"),
    description="dbt build of the marts into a new warehouse file, published atomically when "
    "every model and test passed.",
)

refresh_silver_gold_job = dg.define_asset_job(
    "refresh_silver_gold",
    selection=dg.AssetSelection.groups("silver", "gold"),
    description="Rebuild the silver and gold partitions that changed upstream, each batch gated "
    "by its Great Expectations suite. Pick a partition range to backfill it.",
)

train_models_job = dg.define_asset_job(
    "train_models",
    selection=dg.AssetSelection.groups("ml", "experiments", "serving"),
    description="Build the recommenders' training data and product tables (Spark steps, gated), "
    "evaluate the recommenders and customer models on a time split, refit the champion and "
    "write recommendations, scores, evaluations and model versions to gold, then publish the "
    "serving snapshot.",
)

# A process per step costs ~10 s of imports (Dagster, dbt, pyspark, GX) before it starts.
EXECUTORS = {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor}


def build_definitions(settings: Settings) -> dg.Definitions:
    """The whole code location for these settings."""
    daily = daily_partitions(settings.partitions_start_date)
    return dg.Definitions(
        assets=[
            CLICKSTREAM_TOPIC,
            *ERP_SOURCES.values(),
            bronze_clickstream,
            *erp_assets,
            bronze_table_maintenance,
            *silver_assets(daily),
            *gold_assets(daily),
            *ml_assets(daily),
            experiment_results,
            model_drift,
            serving_snapshot,
            dbt_marts,
            live_warehouse,
            superset_dashboards,
        ],
        jobs=[
            ingest_clickstream_job,
            extract_erp_job,
            refresh_silver_gold_job,
            train_models_job,
            build_marts_job,
            nightly_refresh_job,
            streaming_refresh_job,
            maintain_bronze_job,
            evaluate_experiments_job,
        ],
        schedules=[nightly_schedule, nightly_maintenance_schedule],
        sensors=[
            clickstream_sensor,
            streaming_refresh_sensor,
            experiment_sensor,
            run_failure_sensor,
        ],
        resources=resources(settings)
        | ml_resources(settings)
        | experiments_resources(settings)
        | monitoring_resources(settings)
        | marts_resources(settings)
        | bi_resources(settings),
        executor=EXECUTORS[settings.dagster_executor],
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What Dagster loads: the definitions for the settings of its environment."""
    return build_definitions(load_settings())
