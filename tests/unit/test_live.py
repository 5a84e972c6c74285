"""The live DuckDB file: windows that follow the data, DQ tables, an empty lake, publishing."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from expectations.gate import RESULTS_SCHEMA
from ingestion.erp import QUARANTINE_SCHEMA
from lakehouse.core.settings import Settings
from streaming.records import DEAD_LETTER_SCHEMA
from warehouse.live import TABLES, live_path, live_warehouse, refresh_live

UTC = dt.UTC
NEWEST = dt.datetime(2025, 3, 10, 12, 0, tzinfo=UTC)  # long before the wall clock
UTC_US = pa.timestamp("us", tz="UTC")
KPI_SCHEMA = pa.schema(
    [
        ("period_start", UTC_US),
        *[
            (c, pa.int64())
            for c in (
                "events",
                "active_sessions",
                "new_sessions",
                "active_customers",
                "product_views",
                "adds_to_cart",
                "orders",
            )
        ],
        ("revenue", pa.decimal128(14, 2)),
        ("conversion_rate", pa.float64()),
        ("event_date", pa.date32()),
    ]
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_root=tmp_path, lake_uri=str(tmp_path / "lake"), warehouse_path=tmp_path / "warehouse"
    )


def _write(settings: Settings, name: str, rows: list[dict], schema: pa.Schema, **kw) -> None:
    data = pa.Table.from_pylist(rows, schema=schema)
    write_deltalake(settings.lake.table_uri(name), data, mode="append", **kw)


def _kpis(settings: Settings, name: str, starts: list[dt.datetime], **kw) -> None:
    rows = [
        {
            "period_start": s,
            "event_date": s.date(),
            **dict.fromkeys(KPI_SCHEMA.names[1:8], 1),
            "revenue": 10,
            "conversion_rate": 0.5,
        }
        for s in starts
    ]
    _write(settings, name, rows, KPI_SCHEMA, partition_by=["event_date"], **kw)


def _query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_kpi_windows_end_at_the_newest_period_not_the_clock(settings: Settings) -> None:
    half_hours = [NEWEST - dt.timedelta(minutes=30 * i) for i in range(4 * 48)]  # 4 days
    _kpis(settings, "gold.kpi_minute", half_hours[96:])
    _kpis(settings, "gold.kpi_minute", half_hours[:96])  # a second commit: version 1
    hours = [NEWEST - dt.timedelta(hours=i) for i in range(40 * 24)]
    no_stats = {"delta.dataSkippingNumIndexedCols": "0"}  # the newest hour is read, not looked up
    _kpis(settings, "gold.kpi_hourly", hours, configuration=no_stats)

    refresh = refresh_live(settings.lake, settings.warehouse_path)

    assert refresh.rows["live_kpi_minute"] == 96  # 48 h of half-hours, the newest included
    assert refresh.rows["live_kpi_hourly"] == 30 * 24
    minute = _query(
        refresh.path, "SELECT min(period_start), max(period_start) FROM live_kpi_minute"
    )
    assert minute == [(NEWEST - dt.timedelta(hours=47, minutes=30), NEWEST)]
    hourly = _query(refresh.path, "SELECT min(period_start) FROM live_kpi_hourly")
    assert hourly == [(NEWEST - dt.timedelta(days=30) + dt.timedelta(hours=1),)]
    [(newest, lag, versions)] = _query(
        refresh.path, "SELECT newest_event_minute, lag_seconds, delta_versions FROM live_refresh"
    )
    assert newest == NEWEST
    assert lag == pytest.approx((dt.datetime.now(UTC) - NEWEST).total_seconds(), abs=60)
    assert json.loads(versions) == {"gold.kpi_hourly": 0, "gold.kpi_minute": 1}
    assert refresh.delta_versions == {"gold.kpi_hourly": 0, "gold.kpi_minute": 1}
    stamp = _query(refresh.path, "SELECT fact, value FROM warehouse_build ORDER BY fact")
    assert stamp == [("gold.kpi_hourly", "0"), ("gold.kpi_minute", "1")]
    assert json.loads(json.dumps(refresh.to_dict()))["rows"]["live_kpi_minute"] == 96


def _outcome(validation: str, at: dt.datetime, expectation: str, failed: int | None) -> dict:
    """One quality.validation_results row; failed=None: an expectation without row counts."""
    return {
        "validation_id": validation,
        "validated_at": at,
        "validated_date": at.date(),
        "table_name": f"silver.{validation}",
        "suite": f"silver_{validation}",
        "batch": "whole table",
        "suite_success": validation == "good",
        "expectation": expectation,
        "column_name": "id",
        "success": not failed,
        "observed_value": str(failed),
        "element_count": 100,
        "unexpected_count": failed,
        "unexpected_percent": None if failed is None else failed / 100 * 100,
        "kwargs": "{}",
        "partial_unexpected": "[]",
    }


def test_validations_become_one_row_per_run_and_failures_are_listed(settings: Settings) -> None:
    early, late = NEWEST, NEWEST + dt.timedelta(minutes=5)
    rows = [
        _outcome("good", early, "expect_column_values_to_not_be_null", 0),
        _outcome("good", early, "expect_table_row_count_to_be_between", None),
        _outcome("bad", late, "expect_column_values_to_be_unique", 3),
        _outcome("bad", late, "expect_column_values_to_not_be_null", 4),
        _outcome("bad", late, "expect_column_values_to_be_in_set", 0),
    ]
    _write(settings, "quality.validation_results", rows, RESULTS_SCHEMA)

    refresh = refresh_live(settings.lake, settings.warehouse_path)

    runs = _query(
        refresh.path,
        "SELECT validation_id, validated_at, table_name, suite_success, expectations, "
        "failed_expectations, element_count, unexpected_rows FROM dq_validation_runs ORDER BY 1",
    )
    assert runs == [
        ("bad", late, "silver.bad", False, 3, 2, 100, 7),
        ("good", early, "silver.good", True, 2, 0, 100, 0),
    ]
    failed = _query(
        refresh.path,
        "SELECT table_name, expectation, column_name, unexpected_count, unexpected_percent "
        "FROM dq_failed_expectations ORDER BY unexpected_count",
    )
    assert failed == [
        ("silver.bad", "expect_column_values_to_be_unique", "id", 3, 3.0),
        ("silver.bad", "expect_column_values_to_not_be_null", "id", 4, 4.0),
    ]


def test_rejected_rows_are_counted_per_day_source_and_reason(settings: Settings) -> None:
    day1, day2 = dt.date(2025, 3, 9), dt.date(2025, 3, 10)
    at1, at2 = (dt.datetime.combine(d, dt.time(23, 59), UTC) for d in (day1, day2))
    dead = [
        {"error_kind": kind, "reason": f"detail {i}", "raw_value": b"\xff" * 1000,
         "kafka_topic": "clickstream.events", "ingested_at": at}
        for i, (kind, at) in enumerate(
            [("invalid_json", at1), ("invalid_json", at1), ("undecodable", at1),
             ("invalid_json", at2)]
        )
    ]  # fmt: skip
    _write(settings, "bronze.events_dead_letter", dead, DEAD_LETTER_SCHEMA)
    erp = [
        {"source_table": "MV_Setup_Product", "primary_key": str(i), "row": "{}",
         "reason": f"column 'Price': value '{value}' is not a valid double",
         "_extracted_at": at2, "_extract_id": "x"}
        for i, value in enumerate(["abc", "n/a"])
    ]  # fmt: skip
    _write(settings, "bronze.erp_quarantine", erp, QUARANTINE_SCHEMA)
    events = pa.schema([("event_id", pa.string()), ("reason", pa.string()),
                        ("payload", pa.string()), ("event_date", pa.date32())])  # fmt: skip
    _write(
        settings,
        "silver.events_quarantine",
        [
            {"event_id": str(i), "reason": "duplicate_event_id", "event_date": day1}
            for i in range(3)
        ],
        events,
        partition_by=["event_date"],
    )
    sales = pa.schema([("source_table", pa.string()), ("invoice_id", pa.int64()),
                       ("invoice_date", pa.date32()), ("reason", pa.string())])  # fmt: skip
    _write(
        settings,
        "silver.sales_quarantine",
        [
            {"source_table": "MV_Sales", "invoice_id": 1, "invoice_date": day2, "reason": "r"},
            {
                "source_table": "MV_SalesDetail",
                "invoice_id": 2,
                "reason": "line of an unknown invoice",
            },
        ],
        sales,
    )

    refresh = refresh_live(settings.lake, settings.warehouse_path)

    rejected = _query(refresh.path, "SELECT * FROM dq_rejected_daily ORDER BY ALL")
    assert rejected == [
        (day1, "bronze", "bronze.events_dead_letter", "clickstream.events", "invalid_json", 2),
        (day1, "bronze", "bronze.events_dead_letter", "clickstream.events", "undecodable", 1),
        (day1, "silver", "silver.events_quarantine", "bronze.events", "duplicate_event_id", 3),
        (day2, "bronze", "bronze.erp_quarantine", "MV_Setup_Product",
         "column 'Price': not a valid double", 2),
        (day2, "bronze", "bronze.events_dead_letter", "clickstream.events", "invalid_json", 1),
        (day2, "silver", "silver.sales_quarantine", "MV_Sales", "r", 1),
        (None, "silver", "silver.sales_quarantine", "MV_SalesDetail",
         "line of an unknown invoice", 1),
    ]  # fmt: skip
    assert len(refresh.delta_versions) == 4


def test_an_empty_lake_gives_every_table_with_its_columns_and_no_rows(settings: Settings) -> None:
    refresh = refresh_live(settings.lake, settings.warehouse_path)

    assert (
        refresh.path
        == live_path(settings.warehouse_path)
        == settings.warehouse_path / "live" / "warehouse.duckdb"
    )
    assert refresh.rows == {**dict.fromkeys(TABLES, 0), "live_refresh": 1}
    assert refresh.delta_versions == {}
    for table, columns in TABLES.items():
        described = _query(refresh.path, f"DESCRIBE {table}")
        assert [(c[0], c[1]) for c in described] == list(columns.items())
    [(newest, lag)] = _query(
        refresh.path, "SELECT newest_event_minute, lag_seconds FROM live_refresh"
    )
    assert newest is None and lag is None


def _build_id(path: Path) -> str:
    return _query(path, "SELECT build_id FROM live_refresh")[0][0]


def test_a_reader_keeps_its_build_while_new_ones_are_published_and_three_are_kept(
    settings: Settings,
) -> None:
    _kpis(settings, "gold.kpi_minute", [NEWEST])
    first = refresh_live(settings.lake, settings.warehouse_path)
    reader = duckdb.connect(str(first.path), read_only=True)
    later = [refresh_live(settings.lake, settings.warehouse_path) for _ in range(4)]

    # the first build is pruned and replaced, but the reader's open file is still there
    assert reader.execute("SELECT build_id FROM live_refresh").fetchone()[0] == first.build_id
    reader.close()  # DuckDB shares an open database per path within a process: close first
    assert _build_id(live_path(settings.warehouse_path)) == later[-1].build_id
    warehouse = live_warehouse(settings.warehouse_path)
    assert [b.build_id for b in warehouse.builds()] == [r.build_id for r in later[-3:]]
    assert warehouse.published().build_id == later[-1].build_id


def test_concurrent_refreshes_take_turns(settings: Settings) -> None:
    _kpis(settings, "gold.kpi_minute", [NEWEST])
    results, errors = [], []

    def refresh() -> None:
        try:
            results.append(refresh_live(settings.lake, settings.warehouse_path))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=refresh) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    ids = sorted(r.build_id for r in results)
    assert len(set(ids)) == 3
    assert _build_id(live_path(settings.warehouse_path)) == ids[-1]
