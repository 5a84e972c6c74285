"""Bronze maintenance every night, before the nightly refresh."""

import dagster as dg

from orchestration.defs.maintenance.assets import bronze_table_maintenance

MAINTENANCE_CRON = "30 1 * * *"

maintain_bronze_job = dg.define_asset_job(
    "maintain_bronze",
    selection=dg.AssetSelection.assets(bronze_table_maintenance),
    description="Compact the bronze tables' small files, checkpoint and vacuum (delta-rs).",
)


@dg.schedule(
    name="nightly_maintenance",
    job=maintain_bronze_job,
    cron_schedule=MAINTENANCE_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Bronze maintenance at 01:30 UTC, before the nightly refresh: the streaming "
    "ingester commits every few seconds, so bronze.events gathers many small files a day. "
    "Compaction rewrites them (same rows), and the refresh after it rebuilds the silver "
    "partitions whose bronze files were rewritten.",
)
def nightly_maintenance_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest()
