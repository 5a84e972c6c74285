"""ERP -> bronze extraction against real databases (SQLite files, the local PostgreSQL) and real
Delta tables, with ERP data from the real generator."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from deltalake import DeltaTable

from generator.generate import generate
from generator.world import PRESETS
from ingestion.erp import (
    ERP_TABLES,
    WATERMARK_APP_ID,
    ErpSourceError,
    ExtractReport,
    bronze_name,
    extract_all,
    extract_table,
)
from lakehouse.core.settings import Settings
from tests.conftest import isolated_env, run_cli

pytestmark = pytest.mark.integration

TINY = PRESETS["tiny"]
FIRST_DAYS = 10  # the first extraction sees days [0, 10) of the 21-day tiny window


# -- helpers ----------------------------------------------------------------------------------


def _settings(root: Path, url: str) -> Settings:
    return Settings(data_root=root, erp_db_url=url, lake_uri=str(root / "lake"))


def _read(uri: str, version: int | None = None) -> pa.Table:
    # delta-rs' own reader (a pyarrow dataset over delta-rs can abort the interpreter at exit).
    table = DeltaTable(uri, version=version)
    return pa.RecordBatchReader.from_stream(table.scan()).read_all()


def _bronze(settings: Settings, source_table: str) -> pa.Table:
    return _read(settings.lake.table_uri(f"bronze.{bronze_name(source_table)}"))


def _quarantine(settings: Settings) -> list[dict]:
    return _read(settings.lake.table_uri("bronze.erp_quarantine")).to_pylist()


def _source(url: str, source_table: str) -> tuple[list[str], list[tuple]]:
    """Primary key columns and every (key..., ModifiedAt) of a source table."""
    engine = sa.create_engine(url)
    table = sa.Table(source_table, sa.MetaData(), autoload_with=engine)
    key = [c.name for c in table.primary_key.columns]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*[table.c[k] for k in key], table.c.ModifiedAt)).all()
    engine.dispose()
    return key, [tuple(r) for r in rows]


def _bronze_keys(settings: Settings, source_table: str, key: list[str]) -> list[tuple]:
    table = _bronze(settings, source_table)
    return list(zip(*[table[c].to_pylist() for c in [*key, "ModifiedAt"]], strict=True))


def _execute(url: str, *statements: str, **params) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement), params)
    engine.dispose()


def _watermark(settings: Settings, source_table: str) -> dt.datetime:
    uri = settings.lake.table_uri(f"bronze.{bronze_name(source_table)}")
    micros = DeltaTable(uri).transaction_version(WATERMARK_APP_ID)
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)


def _generate(url: str, out: Path, until_day: int | None = None) -> None:
    generate(TINY, url, out, until_day=until_day, write_events=False)


def extract(settings: Settings, table: str, **options) -> ExtractReport:  # noqa: ANN003
    return extract_table(settings.lake, settings.erp_db_url, table, **options)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ERP with the first FIRST_DAYS days written, generated once per module."""
    root = tmp_path_factory.mktemp("erp-template")
    _generate(f"sqlite:///{root / 'erp.sqlite'}", root / "generated", FIRST_DAYS)
    return root


@pytest.fixture
def erp(template: Path, tmp_path: Path) -> tuple[Settings, str]:
    """A copy of the template ERP of one's own, and settings with a fresh lake."""
    shutil.copytree(template, tmp_path / "erp")
    url = f"sqlite:///{tmp_path / 'erp' / 'erp.sqlite'}"
    return _settings(tmp_path, url), url


# -- tests ------------------------------------------------------------------------------------


def test_bronze_names() -> None:
    assert [bronze_name(t) for t in ERP_TABLES] == [
        "mv_setup_city",
        "mv_setup_area",
        "mv_brand",
        "mv_category",
        "mv_sub_category",
        "mv_setup_product",
        "mv_setup_customer",
        "mv_sales",
        "mv_sales_detail",
    ]


def test_first_run_lands_every_row_typed_and_a_rerun_commits_nothing(erp) -> None:
    settings, url = erp
    reports = extract_all(settings.lake, settings.erp_db_url)
    assert [r.source_table for r in reports] == list(ERP_TABLES)
    for report in reports:
        key, source = _source(url, report.source_table)
        assert report.mode == "incremental" and report.watermark_before is None
        assert report.rows_written == report.rows_read == len(source) > 0
        assert Counter(_bronze_keys(settings, report.source_table, key)) == Counter(source)
        # The watermark sits in the Delta log, equal to the source's max(ModifiedAt).
        newest = max(m for *_, m in source)
        assert _watermark(settings, report.source_table) == newest
        assert report.watermark_after == newest.isoformat() and report.delta_version == 0

    products = _bronze(settings, "MV_SetupProduct")
    types = {f.name: f.type for f in products.schema}
    assert types["ProductID"] == pa.int64() and types["ListPrice"] == pa.float64()
    assert types["LaunchDate"] == pa.date32() and types["IsActive"] == pa.bool_()
    assert types["ModifiedAt"] == pa.timestamp("us")
    assert types["_extracted_at"] == pa.timestamp("us", tz="UTC")
    assert set(products["_extract_mode"].to_pylist()) == {"incremental"}
    assert set(products["_source_table"].to_pylist()) == {"MV_SetupProduct"}
    assert len(set(products["_extract_id"].to_pylist())) == 1

    again = extract_all(settings.lake, settings.erp_db_url)
    assert [(r.rows_written, r.rows_quarantined) for r in again] == [(0, 0)] * len(ERP_TABLES)
    assert [r.delta_version for r in again] == [0] * len(ERP_TABLES)
    assert [r.watermark_after for r in again] == [r.watermark_after for r in reports]


def test_continued_generation_appends_exactly_the_new_and_changed_rows(erp) -> None:
    settings, url = erp
    for table in ERP_TABLES:
        extract(settings, table, chunk_rows=97)  # many chunks, one commit
    before = {table: _source(url, table)[1] for table in ERP_TABLES}
    _generate(url, settings.data_root / "erp" / "generated")  # the rest of the window

    changed = 0
    for table in ERP_TABLES:
        report = extract(settings, table, chunk_rows=97)
        key, after = _source(url, table)
        new = set(after) - set(before[table])
        assert report.rows_written == len(new)
        assert report.delta_version == (1 if new else 0)
        # Each (key, ModifiedAt) exactly once: all versions of a changed row, nothing twice.
        landed = _bronze_keys(settings, table, key)
        assert len(landed) == len(set(landed)) == len(after) + len(set(before[table]) - set(after))
        assert set(landed) == set(after) | set(before[table])
        assert _watermark(settings, table) == max(m for *_, m in after)
        changed += len(set(before[table]) - set(after))
    assert changed > 10, "customers and products change during the window"


def test_rows_committed_late_or_at_the_watermark_are_taken_exactly_once(erp) -> None:
    settings, url = erp
    extract(settings, "MV_Sales")
    watermark = _watermark(settings, "MV_Sales")
    insert = (
        'INSERT INTO "MV_Sales" SELECT :id, "InvoiceNo", "InvoiceDate", "CustomerID", "CityID", '
        '"AreaID", "BranchCode", "Channel", "PaymentType", "InvoiceType", "OriginalInvoiceID", '
        '"GrossAmount", "DiscountAmount", "NetAmount", "Status", "CreatedAt", :modified '
        'FROM "MV_Sales" LIMIT 1'
    )
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        statement = sa.text(insert).bindparams(sa.bindparam("modified", type_=sa.DateTime))
        # Same microsecond as the watermark, committed after the run that set it.
        conn.execute(statement, {"id": 90_000_001, "modified": watermark})
        # Older than the watermark (a long transaction committing late), within the lookback.
        conn.execute(statement, {"id": 90_000_002, "modified": watermark - dt.timedelta(hours=2)})
    engine.dispose()

    report = extract(settings, "MV_Sales")
    assert (report.rows_written, report.delta_version) == (2, 1)
    assert report.watermark_after == report.watermark_before == watermark.isoformat()
    assert (extract(settings, "MV_Sales").rows_written, report.delta_version) == (0, 1)
    key, source = _source(url, "MV_Sales")
    assert Counter(_bronze_keys(settings, "MV_Sales", key)) == Counter(source)


def test_source_columns_added_and_dropped_flow_into_bronze(erp) -> None:
    settings, url = erp
    first = extract(settings, "MV_SetupProduct")
    later = _watermark(settings, "MV_SetupProduct") + dt.timedelta(days=1)
    _execute(
        url,
        'ALTER TABLE "MV_SetupProduct" ADD COLUMN "Color" VARCHAR(20)',
        'ALTER TABLE "MV_SetupProduct" DROP COLUMN "Description"',
        'UPDATE "MV_SetupProduct" SET "Color" = \'red\', "ModifiedAt" = :later '
        'WHERE rowid IN (SELECT rowid FROM "MV_SetupProduct" LIMIT 5)',
        later=later.strftime("%Y-%m-%d %H:%M:%S.%f"),
    )
    report = extract(settings, "MV_SetupProduct")
    assert report.columns_added == ["Color"] and report.rows_written == 5
    rows = _bronze(settings, "MV_SetupProduct").to_pylist()
    assert len(rows) == first.rows_written + 5
    new = [r for r in rows if r["ModifiedAt"] == later]
    assert len(new) == 5 and {r["Color"] for r in new} == {"red"}
    assert all(r["Description"] is None for r in new)
    old = [r for r in rows if r["ModifiedAt"] != later]
    assert all(r["Color"] is None and r["Description"] for r in old)


def test_bad_values_are_quarantined_and_the_good_rows_still_land(erp) -> None:
    settings, url = erp
    # The newest rows: they sit at the watermark, so every later run reads them again.
    newest = 'WHERE rowid = (SELECT rowid FROM "{}" ORDER BY "ModifiedAt" DESC LIMIT 1)'
    _execute(
        url,
        'UPDATE "MV_SalesDetail" SET "Quantity" = \'abc\' ' + newest.format("MV_SalesDetail"),
        'UPDATE "MV_SetupProduct" SET "LaunchDate" = \'2025-02-30\' '
        + newest.format("MV_SetupProduct"),
    )
    reports = {r.source_table: r for r in extract_all(settings.lake, settings.erp_db_url)}
    assert reports["MV_SalesDetail"].rows_quarantined == 1
    assert reports["MV_SetupProduct"].rows_quarantined == 1
    assert sum(r.rows_quarantined for r in reports.values()) == 2
    for table in ("MV_SalesDetail", "MV_SetupProduct"):
        assert reports[table].rows_written == reports[table].rows_read - 1
        assert _bronze(settings, table).num_rows == len(_source(url, table)[1]) - 1

    quarantined = {q["source_table"]: q for q in _quarantine(settings)}
    line = quarantined["MV_SalesDetail"]
    assert set(json.loads(line["primary_key"])) == {"InvoiceID", "LineNo"}
    assert json.loads(line["row"])["Quantity"] == "abc"
    assert line["reason"] == "column 'Quantity': value 'abc' is not a valid int64"
    product = quarantined["MV_SetupProduct"]
    raw = json.loads(product["row"])
    assert json.loads(product["primary_key"]) == {"ProductID": raw["ProductID"]}
    assert raw["LaunchDate"] == "2025-02-30" and raw["ModifiedAt"].startswith("2025-")
    assert "LaunchDate" in product["reason"] and "date32" in product["reason"]
    assert product["_extract_id"] and product["_extracted_at"].tzinfo is not None
    history = DeltaTable(settings.lake.table_uri("bronze.erp_quarantine"))
    assert history.transaction_version("erp-quarantine:MV_SetupProduct") is not None

    # A crash between the quarantine commit and the data commit: the retry lands the data and
    # does not quarantine the bad row a second time.
    shutil.rmtree(settings.lake.table_uri("bronze.mv_sales_detail"))
    retry = extract(settings, "MV_SalesDetail")
    written = reports["MV_SalesDetail"].rows_written
    assert (retry.rows_written, retry.rows_quarantined) == (written, 0)

    # Later runs read the bad rows again (ties, lookback) but never quarantine them twice.
    _generate(url, settings.data_root / "erp" / "generated", FIRST_DAYS + 1)
    for _ in range(2):
        again = extract_all(settings.lake, settings.erp_db_url)
        assert sum(r.rows_quarantined for r in again) == 0
    assert len(_quarantine(settings)) == 2


def test_rows_without_a_usable_modified_at_are_quarantined(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'erp.sqlite'}"
    _execute(
        url,
        'CREATE TABLE "Brand" ("BrandID" INTEGER PRIMARY KEY, "BrandName" VARCHAR(80), '
        '"Rank" INTEGER, "CreatedAt" DATETIME, "ModifiedAt" DATETIME)',
        """INSERT INTO "Brand" VALUES
           (1, 'Alpha', 1, '2025-01-01 00:00:00.000000', '2025-01-01 00:00:00.000000'),
           (2, 'Beta', 2, '2025-01-01 00:00:00.000000', '2025-01-02 00:00:00.000000'),
           (3, 'Gamma', 3, '2025-01-01 00:00:00.000000', NULL),
           (4, 'Delta', 4, '2025-01-01 00:00:00.000000', 'yesterday'),
           (5, 'Epsilon', 2.5, '2025-01-01 00:00:00.000000', '2025-01-01 00:00:00.000000')""",
    )
    settings = _settings(tmp_path, url)
    first = extract(settings, "Brand")
    assert (first.rows_read, first.rows_written, first.rows_quarantined) == (5, 2, 3)
    again = extract(settings, "Brand")
    assert (again.rows_written, again.rows_quarantined, again.delta_version) == (0, 0, 0)
    assert again.watermark_after == "2025-01-02T00:00:00"  # 'yesterday' sorts last in SQLite
    reasons = {json.loads(q["primary_key"])["BrandID"]: q["reason"] for q in _quarantine(settings)}
    assert reasons == {
        3: "column 'ModifiedAt' is NULL, so the row cannot be tracked",
        4: "column 'ModifiedAt': value 'yesterday' is not a valid timestamp[us]",
        5: "column 'Rank': value 2.5 is not a valid int64",
    }
    assert sorted(_bronze(settings, "Brand")["BrandName"].to_pylist()) == ["Alpha", "Beta"]


def test_full_snapshot_replaces_bronze_and_keeps_history(erp) -> None:
    settings, url = erp
    first = extract(settings, "MV_SetupCustomer")
    _generate(url, settings.data_root / "erp" / "generated")
    incremental = extract(settings, "MV_SetupCustomer")
    assert incremental.rows_written > 0

    full = extract(settings, "MV_SetupCustomer", full=True)
    key, source = _source(url, "MV_SetupCustomer")
    assert full.mode == "full" and full.rows_written == full.rows_read == len(source)
    assert full.delta_version == 2
    bronze = _bronze(settings, "MV_SetupCustomer")
    assert bronze.num_rows == len(source) and set(bronze["_extract_mode"].to_pylist()) == {"full"}
    assert Counter(_bronze_keys(settings, "MV_SetupCustomer", key)) == Counter(source)
    assert full.watermark_after == max(m for *_, m in source).isoformat()
    uri = settings.lake.table_uri("bronze.mv_setup_customer")
    assert _read(uri, version=0).num_rows == first.rows_written  # time travel still works
    after = extract(settings, "MV_SetupCustomer")
    assert (after.rows_written, after.delta_version) == (0, 2)


def test_clear_errors(erp, tmp_path) -> None:
    settings, url = erp
    with pytest.raises(ValueError, match="MV_SalesDetail"):
        extract(settings, "MV_Nope")
    _execute(
        url, 'DROP INDEX "ix_Brand_ModifiedAt"', 'ALTER TABLE "Brand" DROP COLUMN "ModifiedAt"'
    )
    with pytest.raises(ValueError, match="no ModifiedAt column"):
        extract(settings, "Brand")
    missing = _settings(tmp_path, f"sqlite:///{tmp_path / 'missing.sqlite'}")
    with pytest.raises(ErpSourceError, match="no ERP database"):
        extract(missing, "Brand")
    assert not (tmp_path / "missing.sqlite").exists()
    down = _settings(tmp_path, "postgresql+psycopg://erp:s3cret@127.0.0.1:1/erp")
    with pytest.raises(ErpSourceError, match=r"erp:\*\*\*@127\.0\.0\.1:1/erp") as failure:
        extract(down, "Brand")
    assert "s3cret" not in str(failure.value)


def test_postgres_source_incremental_and_idempotent(postgres_url, tmp_path) -> None:
    settings = _settings(tmp_path, postgres_url)
    _generate(postgres_url, tmp_path / "generated", FIRST_DAYS)
    first = extract_all(settings.lake, settings.erp_db_url)
    for report in first:
        key, source = _source(postgres_url, report.source_table)
        assert report.rows_written == len(source) > 0
        assert Counter(_bronze_keys(settings, report.source_table, key)) == Counter(source)
    assert [r.rows_written for r in extract_all(settings.lake, settings.erp_db_url)] == [0] * len(
        ERP_TABLES
    )

    _generate(postgres_url, tmp_path / "generated")
    for report in extract_all(settings.lake, settings.erp_db_url):
        key, source = _source(postgres_url, report.source_table)
        landed = _bronze_keys(settings, report.source_table, key)
        assert len(landed) == len(set(landed)) and set(source) <= set(landed)
        assert _watermark(settings, report.source_table) == max(m for *_, m in source)
    types = {f.name: f.type for f in _bronze(settings, "MV_Sales").schema}
    assert types["NetAmount"] == pa.float64() and types["InvoiceID"] == pa.int64()


def test_an_unreachable_erp_fails_the_extract_in_seconds_and_writes_nothing(tmp_path) -> None:
    """The fault suite's ERP row: the database does not answer. The command waits a bounded,
    announced while (3 attempts, 1 s then 2 s apart), then fails naming the database (its
    password masked); no bronze table is created."""
    env = isolated_env(tmp_path) | {"ERP_DB_URL": "postgresql+psycopg://erp:s3cret@127.0.0.1:1/erp"}
    started = time.monotonic()
    result = run_cli("extract", env=env, check=False)
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    said = " ".join(result.stderr.split())
    assert "did not answer (attempt 1:" in said and "trying again in 1s" in said
    assert "postgresql+psycopg://erp:***@127.0.0.1:1/erp did not answer after 3 attempts" in said
    assert "Nothing was extracted; bronze is unchanged." in said and "s3cret" not in said
    assert not (tmp_path / "lake").exists()
