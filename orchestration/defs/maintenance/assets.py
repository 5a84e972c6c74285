"""Lake maintenance with delta-rs: compact small files, checkpoint, vacuum what is unreferenced."""

import time

import dagster as dg
from pydantic import Field

from ingestion.erp import ERP_TABLES, bronze_name
from lakehouse.core.lake import MIN_RETENTION_HOURS, maintain
from orchestration.defs.resources import LakeResource
from orchestration.lib.code_versions import source_version
from orchestration.lib.spark_steps import key
from streaming.ingest import DEAD_LETTER_TABLE, EVENTS_TABLE

BRONZE_TABLES = [EVENTS_TABLE, DEAD_LETTER_TABLE, *(f"bronze.{bronze_name(t)}" for t in ERP_TABLES)]


class MaintenanceConfig(dg.Config):
    retention_hours: int = Field(
        default=168,
        description="Files unreferenced for longer than this are deleted (the time-travel "
        f"horizon); at least {MIN_RETENTION_HOURS} h so a writer's not-yet-committed files "
        "are never taken.",
    )


@dg.asset(
    key=["maintenance", "bronze_tables"],
    deps=[key(table) for table in BRONZE_TABLES],
    group_name="maintenance",
    kinds={"delta"},
    owners=["team:data-engineering"],
    code_version=source_version("lakehouse.core.lake"),
    description="Compacts the small files that streaming ingestion leaves behind, writes a "
    "checkpoint and vacuums files no version within the retention window references (including "
    "parquet written by an ingester that crashed before its commit).",
)
def bronze_table_maintenance(
    context: dg.AssetExecutionContext, config: MaintenanceConfig, lake: LakeResource
) -> dg.MaterializeResult:
    started = time.monotonic()
    results = {}
    for name in BRONZE_TABLES:
        table = lake.open(name)
        if table is None:
            continue
        results[name] = maintain(table, config.retention_hours)
        context.log.info(f"{name}: {results[name]}")
    return dg.MaterializeResult(
        metadata={
            "tables": len(results),
            "files_compacted": sum(r["files_removed"] for r in results.values()),
            "files_written": sum(r["files_added"] for r in results.values()),
            "files_vacuumed": sum(r["files_vacuumed"] for r in results.values()),
            "by_table": results,
            "seconds": round(time.monotonic() - started, 2),
        }
    )
