"""The live DuckDB file: what Superset's real-time and data-quality dashboards read.

The nightly dbt warehouse is rebuilt once a day; the "right now" charts need data minutes old.
So a small second warehouse, `WAREHOUSE_PATH/live/warehouse.duckdb`, is rebuilt often (it takes
well under a second; meant to run every minute) from the Delta tables directly, without dbt:

- `live_kpi_minute` / `live_kpi_hourly`: gold.kpi_minute for the 48 hours and gold.kpi_hourly
  for the 30 days ending at each table's newest period (the data may be historical, so the
  window follows the data, not the wall clock);
- `dq_validation_runs` / `dq_failed_expectations`: quality.validation_results per validation
  and its newest failed expectations;
- `dq_rejected_daily`: rows rejected per day, quarantine table, source and reason, from the
  bronze dead letters and quarantines and the silver quarantines;
- `monitor_model_drift`: the models' drift reports (gold.model_drift) of the newest
  DRIFT_WINDOW: the population stability index per model, input and score;
- `live_refresh`: when the file was refreshed, the newest event minute, the lag between them
  and the Delta version of every table read.

It is published like the dbt warehouse (warehouse/publish.py): a new build file is filled,
stamped, checked and swapped in atomically, so dashboards never wait and never see a
half-refreshed file. Every table is created from an explicit schema first, so a fresh lake
yields empty tables with the right columns (Superset datasets need them) instead of errors.

Sources are read with delta-rs' own scan (projection and predicate pushed down) and streamed
into DuckDB: nothing is loaded whole, and the dead letters' raw payloads are never read.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from lakehouse.core.lake import Lake
from warehouse.publish import KEEP_BUILDS, Build, Warehouse

LIVE_DIR = "live"
KPI_MINUTE_WINDOW = dt.timedelta(hours=48)
KPI_HOURLY_WINDOW = dt.timedelta(days=30)
FAILED_EXPECTATIONS_KEPT = 10_000
DRIFT_WINDOW = dt.timedelta(days=90)


_KPI = {
    "event_date": "DATE",
    "period_start": "TIMESTAMP WITH TIME ZONE",
    "events": "BIGINT",
    "active_sessions": "BIGINT",
    "new_sessions": "BIGINT",
    "active_customers": "BIGINT",
    "product_views": "BIGINT",
    "adds_to_cart": "BIGINT",
    "orders": "BIGINT",
    "revenue": "DECIMAL(14,2)",
    "conversion_rate": "DOUBLE",
}

# Every table of the live file, column -> DuckDB type: all are created before anything is read.
TABLES: dict[str, dict[str, str]] = {
    "live_kpi_minute": _KPI,
    "live_kpi_hourly": _KPI,
    "dq_validation_runs": {
        "validation_id": "VARCHAR",
        "validated_at": "TIMESTAMP WITH TIME ZONE",
        "table_name": "VARCHAR",
        "suite": "VARCHAR",
        "batch": "VARCHAR",
        "suite_success": "BOOLEAN",
        "expectations": "BIGINT",
        "failed_expectations": "BIGINT",
        "element_count": "BIGINT",
        "unexpected_rows": "BIGINT",
    },
    "dq_failed_expectations": {
        "validation_id": "VARCHAR",
        "validated_at": "TIMESTAMP WITH TIME ZONE",
        "table_name": "VARCHAR",
        "suite": "VARCHAR",
        "expectation": "VARCHAR",
        "column_name": "VARCHAR",
        "unexpected_count": "BIGINT",
        "unexpected_percent": "DOUBLE",
        "observed_value": "VARCHAR",
    },
    "dq_rejected_daily": {
        "day": "DATE",
        "layer": "VARCHAR",
        "quarantine_table": "VARCHAR",
        "source": "VARCHAR",
        "reason": "VARCHAR",
        "rows": "BIGINT",
    },
    "monitor_model_drift": {
        "checked_at": "TIMESTAMP WITH TIME ZONE",
        "model": "VARCHAR",
        "model_version": "VARCHAR",
        "data_window": "VARCHAR",
        "feature": "VARCHAR",
        "is_score": "BOOLEAN",
        "psi": "DOUBLE",
        "status": "VARCHAR",
        "reference_rows": "BIGINT",
        "current_rows": "BIGINT",
        "is_latest_report": "BOOLEAN",  # the model's newest report
    },
    "live_refresh": {
        "build_id": "VARCHAR",
        "refreshed_at": "TIMESTAMP WITH TIME ZONE",
        "newest_event_minute": "TIMESTAMP WITH TIME ZONE",
        "lag_seconds": "DOUBLE",
        "delta_versions": "VARCHAR",
    },
}


@dataclass(frozen=True)
class Rejects:
    """How one quarantine table maps onto dq_rejected_daily (SQL over its columns)."""

    table: str  # layer.name
    columns: tuple[str, ...]  # read from the table, nothing else
    day: str
    source: str
    reason: str


# ERP reasons quote the bad value ("column 'Price': value 'x' is not a valid double"): drop it,
# so a chart groups by the broken column and type rather than by every distinct value.
_ERP_REASON = r"regexp_replace(reason, ': value .*? is not a valid ', ': not a valid ', 'g')"

REJECTS = (
    Rejects(
        "bronze.events_dead_letter",
        ("ingested_at", "kafka_topic", "error_kind"),
        day="ingested_at::DATE",
        source="kafka_topic",
        reason="error_kind",
    ),
    Rejects(
        "bronze.erp_quarantine",
        ("_extracted_at", "source_table", "reason"),
        day="_extracted_at::DATE",
        source="source_table",
        reason=_ERP_REASON,
    ),
    Rejects(
        "silver.events_quarantine",
        ("event_date", "reason"),
        day="event_date",
        source="'bronze.events'",
        reason="reason",
    ),
    Rejects(
        # orphan lines (no invoice header) have no invoice_date: their day is NULL
        "silver.sales_quarantine",
        ("invoice_date", "source_table", "reason"),
        day="invoice_date",
        source="source_table",
        reason="reason",
    ),
)


KPI_MINUTE, KPI_HOURLY = "gold.kpi_minute", "gold.kpi_hourly"
VALIDATIONS = "quality.validation_results"
DRIFT = "gold.model_drift"
# every table a refresh reads
SOURCES = (KPI_MINUTE, KPI_HOURLY, VALIDATIONS, DRIFT, *(r.table for r in REJECTS))


@dataclass
class LiveRefresh:
    build_id: str
    path: Path
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)
    delta_versions: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "build_id": self.build_id,
            "path": str(self.path),
            "seconds": round(self.seconds, 2),
            "rows": self.rows,
            "delta_versions": self.delta_versions,
        }


def live_warehouse(warehouse_path: Path) -> Warehouse:
    return Warehouse(Path(warehouse_path) / LIVE_DIR)


def live_path(warehouse_path: Path) -> Path:
    """The file the dashboards open (read-only)."""
    return live_warehouse(warehouse_path).current


class _Sources:
    """The source tables of one refresh, each opened once, so every read of a table sees one
    version and that version is the one recorded in the build."""

    def __init__(self, lake: Lake):
        self.lake = lake
        self.versions: dict[str, int] = {}
        self._tables: dict[str, DeltaTable | None] = {}

    def table(self, name: str) -> DeltaTable | None:
        """`layer.table`, or None when it has not been written yet."""
        if name not in self._tables:
            delta = self.lake.open(name)
            self._tables[name] = delta
            if delta is not None:
                self.versions[name] = delta.version()
        return self._tables[name]

    def scan(
        self, name: str, columns: list[str] | tuple[str, ...], predicate: str | None = None
    ) -> pa.RecordBatchReader | None:
        """A stream of `columns` of the rows matching `predicate` (delta-rs' scan: a pyarrow
        dataset over delta-rs can abort the interpreter at exit)."""
        delta = self.table(name)
        if delta is None:
            return None
        return pa.RecordBatchReader.from_stream(delta.scan(list(columns), predicate))

    def newest(self, name: str, column: str) -> Any:
        """The largest value of `column`, from the log's file statistics when every file has
        them (no data read); None for a missing or empty table."""
        delta = self.table(name)
        if delta is None:
            return None
        actions = pa.table(delta.get_add_actions(flatten=True))
        stat = f"max.{column}"
        if stat in actions.column_names and actions[stat].null_count == 0:
            return pc.max(actions[stat]).as_py()
        reader = self.scan(name, [column], f'"{column}" IS NOT NULL')
        return pc.max(reader.read_all()[column]).as_py()


def _insert(
    con: duckdb.DuckDBPyConnection, target: str, source: pa.RecordBatchReader | None, select: str
) -> None:
    """INSERT INTO `target` `select` (which reads the stream as `src`); nothing when the source
    table does not exist."""
    if source is None:
        return
    con.register("src", source)
    try:
        con.execute(f"INSERT INTO {target} {select}")
    finally:
        con.unregister("src")


def _fill_kpis(
    con: duckdb.DuckDBPyConnection, lake: _Sources, target: str, source: str, window: dt.timedelta
) -> dt.datetime | None:
    """The rows of the `window` ending at the newest period_start; that newest period_start."""
    newest = lake.newest(source, "period_start")
    if newest is None:
        return None
    start = newest - window
    # the event_date bound only prunes partitions; period_start decides
    predicate = (
        f"event_date >= DATE '{(start - dt.timedelta(days=1)).date().isoformat()}' "
        f"AND period_start > TIMESTAMP '{start.isoformat()}'"
    )
    columns = list(TABLES[target])
    _insert(
        con, target, lake.scan(source, columns, predicate), f"SELECT {', '.join(columns)} FROM src"
    )
    return newest


def _fill_validations(con: duckdb.DuckDBPyConnection, lake: _Sources) -> None:
    source = VALIDATIONS
    runs = ("validation_id", "validated_at", "table_name", "suite", "batch", "suite_success")
    _insert(
        con,
        "dq_validation_runs",
        lake.scan(source, [*runs, "success", "element_count", "unexpected_count"]),
        f"""SELECT {", ".join(runs)}, count(*), count(*) FILTER (WHERE NOT success),
                   max(element_count), coalesce(sum(unexpected_count), 0)
            FROM src GROUP BY ALL""",
    )
    failed = list(TABLES["dq_failed_expectations"])
    _insert(
        con,
        "dq_failed_expectations",
        lake.scan(source, failed, "success = false"),
        f"SELECT {', '.join(failed)} FROM src "
        f"ORDER BY validated_at DESC LIMIT {FAILED_EXPECTATIONS_KEPT}",
    )


def _fill_rejects(con: duckdb.DuckDBPyConnection, lake: _Sources) -> None:
    for r in REJECTS:
        layer = r.table.split(".", 1)[0]
        _insert(
            con,
            "dq_rejected_daily",
            lake.scan(r.table, r.columns),
            f"""SELECT {r.day}, '{layer}', '{r.table}', {r.source},
                       coalesce({r.reason}, 'unknown'), count(*)
                FROM src GROUP BY ALL""",
        )


def _fill_drift(con: duckdb.DuckDBPyConnection, lake: _Sources) -> None:
    newest = lake.newest(DRIFT, "checked_at")
    if newest is None:
        return
    columns = list(TABLES["monitor_model_drift"])[:-1]
    since = (newest - DRIFT_WINDOW).isoformat()
    _insert(
        con,
        "monitor_model_drift",
        lake.scan(DRIFT, columns, f"checked_at > TIMESTAMP '{since}'"),
        f"SELECT {', '.join(columns)}, "
        "checked_at = max(checked_at) OVER (PARTITION BY model) FROM src",
    )


def refresh_live(lake: Lake, warehouse_path: Path) -> LiveRefresh:
    """Rebuild the live file (under `warehouse_path`) from the lake and publish it; one refresh
    at a time (a second one waits for the lock, then reads the lake afresh)."""
    started = time.monotonic()
    warehouse = live_warehouse(warehouse_path)
    sources = _Sources(lake)  # tables are opened on first read: inside the lock, in `fill`
    rows: dict[str, int] = {}

    def fill(build: Build) -> dict[str, str]:
        rows.update(_fill(build.path, build.build_id, sources))
        return {k: str(v) for k, v in sources.versions.items()}

    # the live directory has its own lock, so a refresh never waits for a nightly dbt build
    build = warehouse.rebuild(fill, TABLES, keep=KEEP_BUILDS)
    return LiveRefresh(
        build_id=build.build_id,
        path=warehouse.current,
        seconds=time.monotonic() - started,
        rows=rows,
        delta_versions=dict(sorted(sources.versions.items())),
    )


def _fill(path: Path, build_id: str, lake: _Sources) -> dict[str, int]:
    """Create every table and fill it; rows per table."""
    with duckdb.connect(str(path)) as con:
        con.execute("SET TimeZone = 'UTC'")  # days of timestamps are UTC days
        for name, columns in TABLES.items():
            ddl = ", ".join(f'"{column}" {type_}' for column, type_ in columns.items())
            con.execute(f"CREATE TABLE {name} ({ddl})")
        newest = _fill_kpis(con, lake, "live_kpi_minute", KPI_MINUTE, KPI_MINUTE_WINDOW)
        _fill_kpis(con, lake, "live_kpi_hourly", KPI_HOURLY, KPI_HOURLY_WINDOW)
        _fill_validations(con, lake)
        _fill_rejects(con, lake)
        _fill_drift(con, lake)
        now = dt.datetime.now(dt.UTC)
        con.execute(
            "INSERT INTO live_refresh VALUES (?, ?, ?, ?, ?)",
            [
                build_id,
                now,
                newest,
                None if newest is None else (now - newest).total_seconds(),
                json.dumps(dict(sorted(lake.versions.items()))),
            ],
        )
        return {name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in TABLES}
