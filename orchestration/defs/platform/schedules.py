"""The nightly refresh: everything downstream of the sources, in dependency order.

ERP extraction (incremental), silver and gold (the partitions that changed), retraining and
champion selection, the serving snapshot, the dbt marts (published atomically), the live file
and Superset.
Clickstream ingestion is not in it: the sensor keeps bronze events current all day.
"""

import dagster as dg

from orchestration.defs.bronze.assets import erp_assets
from orchestration.lib.spark_steps import refresh_request

NIGHTLY_CRON = "0 2 * * *"

nightly_refresh_job = dg.define_asset_job(
    "nightly_refresh",
    selection=dg.AssetSelection.assets(*erp_assets)
    | dg.AssetSelection.groups(
        "silver", "gold", "ml", "experiments", "serving", "monitoring", "marts", "bi"
    ),
    description="ERP extraction, silver/gold partitions that changed, model retraining and "
    "champion selection, the experiments' results, the serving snapshot, the models' drift "
    "report, dbt marts published atomically, the live file and Superset.",
)


@dg.schedule(
    name="nightly",
    job=nightly_refresh_job,
    cron_schedule=NIGHTLY_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The nightly refresh at 02:00 UTC (the days that changed, filed under today's "
    "partition).",
)
def nightly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(**refresh_request(context.scheduled_execution_time))
