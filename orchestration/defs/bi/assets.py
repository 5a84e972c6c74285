"""The `bi` group: the live DuckDB file and Superset's dashboards (docs/bi.md).

`bi/live_warehouse` rebuilds the file the real-time and data-quality dashboards read (seconds;
cheap enough to follow every streaming refresh). `bi/superset` applies the dashboards-as-code
bundle after the marts are published (and, embedded, starts the web server if it is down).
"""

import dagster as dg

from orchestration.defs.bi.resources import BiResource
from orchestration.lib.code_versions import source_version
from orchestration.lib.metadata import markdown_table
from warehouse.superset.bundle import tables_read

LIVE_SOURCES = [
    ["gold", "kpi_minute"],
    ["gold", "kpi_hourly"],
    ["bronze", "events_dead_letter"],
    ["silver", "events_quarantine"],
    ["silver", "sales_quarantine"],
]


def _marts_read_by_dashboards() -> list[dg.AssetKey]:
    """The dbt models the warehouse datasets read (marts/<model>)."""
    return [dg.AssetKey(["marts", t]) for t in sorted(tables_read()["warehouse"])]


@dg.asset(
    key=["bi", "live_warehouse"],
    group_name="bi",
    kinds={"duckdb"},
    owners=["team:analytics"],
    deps=[dg.AssetKey(k) for k in LIVE_SOURCES],
    code_version=source_version("warehouse/live.py", "warehouse/publish.py"),
    pool="lake:bi.live_warehouse",
    description="The live DuckDB file (WAREHOUSE_PATH/live/warehouse.duckdb): the newest 48 h "
    "of minute KPIs, 30 days of hourly ones, validation runs and rejected rows, rebuilt from "
    "the Delta tables and published atomically for Superset.",
)
def live_warehouse(context: dg.AssetExecutionContext, bi: BiResource) -> dg.MaterializeResult:
    from warehouse.live import refresh_live

    result = refresh_live(bi.settings())
    rows = [{"table": t, "rows": n} for t, n in result.rows.items()]
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(result.path)),
            "build_id": result.build_id,
            "seconds": round(result.seconds, 2),
            "rows": dg.MetadataValue.md(markdown_table(rows)),
            "delta_versions": result.delta_versions,
        }
    )


@dg.asset(
    key=["bi", "superset"],
    group_name="bi",
    kinds={"superset"},
    owners=["team:analytics"],
    deps=[live_warehouse, *_marts_read_by_dashboards()],
    code_version=source_version("lakehouse/bi.py", "warehouse/superset"),
    description="Superset's dashboards, datasets and saved queries applied from the YAML under "
    "warehouse/superset/dashboards, over the published warehouse and the live file.",
)
def superset_dashboards(context: dg.AssetExecutionContext, bi: BiResource) -> dg.MaterializeResult:
    from lakehouse.bi import Bi

    report = Bi(bi.settings()).up(progress=context.log.info)
    provisioned = report.provisioned
    return dg.MaterializeResult(
        metadata={
            "url": dg.MetadataValue.url(report.url),
            "dashboards": dg.MetadataValue.md(
                markdown_table(
                    [
                        {
                            "dashboard": d["title"],
                            "url": f"{report.url}/superset/dashboard/{d['slug']}/",
                        }
                        for d in provisioned["dashboards"]
                    ]
                )
            ),
            "charts": provisioned["charts"],
            "datasets": provisioned["datasets"],
            "datasets_without_table": provisioned["datasets_without_table"],
            "seconds": report.steps,
        }
    )
