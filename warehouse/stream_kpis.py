"""The stream file: the online store's live counters as a DuckDB file for Superset, seconds old.

The live file (warehouse/live.py) follows the Delta tables, so it trails the clickstream by the
ingestion and refresh runs (about a minute). The stream processor already counts every event in
the online store (streaming/online.py) as it arrives; this module publishes those counters as a
third small warehouse, `WAREHOUSE_PATH/stream/warehouse.duckdb`, every STREAM_KPI_SECONDS
(`lakehouse stream` does it beside the processor). The Real-time dashboard's "right now" charts
read it:

- `stream_kpi_minute`: per minute of the last `MINUTES`: events, product views, adds to cart,
  purchase lines, orders, revenue, active sessions and conversion (sessions with a purchase /
  active sessions); minutes without events are rows of zeros, so charts show the gaps;
- `stream_orders`: the newest purchase lines of the live order feed;
- `stream_api_health`: the recommendation API's health per scrape of the last hour
  (serving/health.py): requests and their rate, latency p50/p95/p99, degraded answers and their
  share, impressions lost, the serving snapshot's age, or that it did not answer;
- `stream_refresh`: one row: when the file was published and the newest event it counts
  (`newest_event_at`), so a chart can say how far behind the clock it is at query time.

Published like the other warehouses (warehouse/publish.py: a new file, stamped, checked and
swapped in with one rename), so a dashboard never waits for the writer or sees half a file.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from streaming.online import OnlineStore
from warehouse.publish import Build, Warehouse

STREAM_DIR = "stream"
MINUTES = 180  # three hours of minutes
ORDERS = 50
KEEP = 2  # builds kept: the published one and the one before (a reader may still hold it)

TABLES: dict[str, dict[str, str]] = {
    "stream_kpi_minute": {
        "period_start": "TIMESTAMP WITH TIME ZONE",
        "events": "BIGINT",
        "product_views": "BIGINT",
        "adds_to_cart": "BIGINT",
        "purchase_lines": "BIGINT",
        "orders": "BIGINT",
        "revenue": "DECIMAL(14,2)",
        "active_sessions": "BIGINT",
        "converted_sessions": "BIGINT",
        "conversion_rate": "DOUBLE",
    },
    "stream_orders": {
        "event_time": "TIMESTAMP WITH TIME ZONE",
        "order_id": "VARCHAR",
        "customer_id": "VARCHAR",
        "product_id": "VARCHAR",
        "amount": "DECIMAL(14,2)",
        "city": "VARCHAR",
    },
    "stream_api_health": {
        "scraped_at": "TIMESTAMP WITH TIME ZONE",
        "api_up": "BOOLEAN",
        "requests": "BIGINT",
        "requests_per_second": "DOUBLE",
        "p50_ms": "DOUBLE",
        "p95_ms": "DOUBLE",
        "p99_ms": "DOUBLE",
        "degraded": "BIGINT",
        "degraded_share": "DOUBLE",
        "impressions_lost": "BIGINT",
        "snapshot_age_seconds": "DOUBLE",
    },
    "stream_refresh": {
        "build_id": "VARCHAR",
        "refreshed_at": "TIMESTAMP WITH TIME ZONE",
        "newest_event_at": "TIMESTAMP WITH TIME ZONE",
        "events_applied": "BIGINT",
    },
}


@dataclass(frozen=True)
class StreamRefresh:
    build_id: str
    path: Path
    seconds: float
    newest_event_at: dt.datetime | None
    events: int  # in the minutes published


def stream_warehouse(warehouse_path: Path) -> Warehouse:
    return Warehouse(Path(warehouse_path) / STREAM_DIR)


def stream_path(warehouse_path: Path) -> Path:
    """The file the dashboards open (read-only)."""
    return stream_warehouse(warehouse_path).current


def publish_stream_kpis(
    store: OnlineStore | None, warehouse_path: Path, now: float | None = None
) -> StreamRefresh:
    """Publish the store's counters of the last MINUTES up to `now` as the stream file; with no
    store, empty tables (what `lakehouse bi up` needs before the processor first runs)."""
    started = time.monotonic()
    minutes = store.minutes(last=MINUTES, now=now) if store else []
    orders = store.orders(count=ORDERS) if store else []
    stats = store.stats() if store else {}
    columns = TABLES["stream_api_health"]
    health = [{c: row.get(c) for c in columns} for row in store.api_health()] if store else []
    newest_ms = stats.get("newest_event_ms")
    newest = None if newest_ms is None else dt.datetime.fromtimestamp(newest_ms / 1000, dt.UTC)
    warehouse = stream_warehouse(warehouse_path)

    def fill(build: Build) -> dict[str, str]:
        with duckdb.connect(str(build.path)) as con:
            _fill(con, build.build_id, minutes, orders, newest, int(stats.get("applied", 0)))
            _insert(
                con,
                "stream_api_health",
                health,
                ", ".join(
                    "make_timestamptz((scraped_at * 1e6)::BIGINT)"
                    if c == "scraped_at"
                    else f'"{c}"::{t}'
                    for c, t in columns.items()
                ),
            )
        return {}

    build = warehouse.rebuild(fill, TABLES, keep=KEEP)
    return StreamRefresh(
        build_id=build.build_id,
        path=warehouse.current,
        seconds=time.monotonic() - started,
        newest_event_at=newest,
        events=sum(m["events"] for m in minutes),
    )


def ensure_stream_file(warehouse_path: Path) -> Path:
    """The stream file, published empty when there is none yet."""
    path = stream_path(warehouse_path)
    if not path.exists():
        publish_stream_kpis(None, warehouse_path)
    return path


def _fill(
    con: duckdb.DuckDBPyConnection,
    build_id: str,
    minutes: list[dict],
    orders: list[dict],
    newest: dt.datetime | None,
    applied: int,
) -> None:
    con.execute("SET TimeZone = 'UTC'")
    for name, columns in TABLES.items():
        ddl = ", ".join(f'"{column}" {type_}' for column, type_ in columns.items())
        con.execute(f"CREATE TABLE {name} ({ddl})")
    # the rows go in as one Arrow table each (executemany took 1.3 s for 230 rows)
    _insert(
        con,
        "stream_kpi_minute",
        minutes,
        """minute::TIMESTAMPTZ, events, product_views, add_to_carts, purchases, orders, revenue,
           active_sessions, converted_sessions, conversion""",
    )
    _insert(
        con,
        "stream_orders",
        orders,
        """make_timestamptz(event_time::BIGINT * 1000), order_id, nullif(customer_id, ''),
           product_id, amount::DECIMAL(14,2), nullif(city, '')""",
    )
    con.execute(
        "INSERT INTO stream_refresh VALUES (?, ?, ?, ?)",
        [build_id, dt.datetime.now(dt.UTC), newest, applied],
    )


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict], select: str) -> None:
    """INSERT INTO `table` SELECT `select` FROM the rows (dicts of the store's reads)."""
    if not rows:
        return
    con.register("src", pa.Table.from_pylist(rows))
    try:
        con.execute(f"INSERT INTO {table} SELECT {select} FROM src")
    finally:
        con.unregister("src")
