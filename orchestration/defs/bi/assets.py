"""The `bi` group: the live DuckDB file and Superset's dashboards (docs/bi.md).

`bi/live_warehouse` rebuilds the file the real-time and data-quality dashboards read (seconds;
cheap enough to follow every streaming refresh). `bi/superset` applies the dashboards-as-code
bundle after the marts are published (`lakehouse bi up` runs it, then starts the web server).
"""

import dagster as dg

import warehouse.live
from orchestration.defs.bi.resources import LiveWarehouseResource, SupersetResource
from orchestration.defs.resources import LakeResource
from orchestration.lib.code_versions import source_version
from orchestration.lib.metadata import BY_PRODUCTS, markdown_table
from orchestration.lib.spark_steps import key
from warehouse.superset.bundle import tables_read


def _marts_read_by_dashboards() -> list[dg.AssetKey]:
    """The dbt models the warehouse datasets read (marts/<model>)."""
    return [dg.AssetKey(["marts", t]) for t in sorted(tables_read()["warehouse"])]


@dg.asset(
    key=["bi", "live_warehouse"],
    group_name="bi",
    kinds={"duckdb"},
    owners=["team:analytics"],
    deps=[key(t) for t in warehouse.live.SOURCES if t not in BY_PRODUCTS],
    code_version=source_version("warehouse.live", "warehouse.publish"),
    pool="lake:bi.live_warehouse",
    description="The live DuckDB file (WAREHOUSE_PATH/live/warehouse.duckdb): the newest 48 h "
    "of minute KPIs, 30 days of hourly ones, validation runs and rejected rows, rebuilt from "
    "the Delta tables and published atomically for Superset.",
)
def live_warehouse(
    context: dg.AssetExecutionContext, live: LiveWarehouseResource, lake: LakeResource
) -> dg.MaterializeResult:
    result = live.refresh(lake.lake)
    rows = [{"table": t, "rows": n} for t, n in result.rows.items()]
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(result.path)),
            "build_id": result.build_id,
            "seconds": round(result.seconds, 2),
            "rows": dg.MetadataValue.md(markdown_table(rows)),
            "delta_versions": result.delta_versions,
            "refresh": dg.MetadataValue.json(result.to_dict()),  # `lakehouse bi refresh`
        }
    )


@dg.asset(
    key=["bi", "superset"],
    group_name="bi",
    kinds={"superset"},
    owners=["team:analytics"],
    deps=[live_warehouse, *_marts_read_by_dashboards()],
    code_version=source_version("warehouse.superset", "warehouse.stream_kpis"),
    description="Superset's dashboards, datasets and saved queries applied from the YAML under "
    "warehouse/superset/dashboards, over the published warehouse, the live file and the stream "
    "file (published empty until the stream processor runs).",
)
def superset_dashboards(
    context: dg.AssetExecutionContext, superset: SupersetResource
) -> dg.MaterializeResult:
    applied = superset.apply(progress=context.log.info)
    provisioned = applied.provisioned
    return dg.MaterializeResult(
        metadata={
            "url": dg.MetadataValue.url(superset.url),
            "dashboards": dg.MetadataValue.md(
                markdown_table(
                    [
                        {
                            "dashboard": d["title"],
                            "url": f"{superset.url}/superset/dashboard/{d['slug']}/",
                        }
                        for d in provisioned["dashboards"]
                    ]
                )
            ),
            "charts": provisioned["charts"],
            "datasets": provisioned["datasets"],
            "datasets_without_table": provisioned["datasets_without_table"],
            "seconds": applied.steps,
            "provisioned": dg.MetadataValue.json(provisioned),  # `lakehouse bi up`
        }
    )
