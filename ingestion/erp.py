"""ERP -> bronze: copy the `MV_*` tables of the ERP database (any SQLAlchemy URL) into Delta tables
with delta-rs, incrementally by `ModifiedAt` or as a full snapshot. Design: docs/bronze_erp.md.

One run of one table makes at most two Delta commits: the quarantined rows, then the data together
with its watermark (a Delta app transaction), so a crash never leaves half a run behind.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from lakehouse.core.lake import Lake, open_table
from lakehouse.core.settings import mask_password

# Masters first, so that a run of all tables lands facts after the dimensions they reference.
ERP_TABLES: tuple[str, ...] = (
    "MV_SetupCity",
    "MV_SetupArea",
    "Brand",
    "Category",
    "SubCategory",
    "MV_SetupProduct",
    "MV_SetupCustomer",
    "MV_Sales",
    "MV_SalesDetail",
)
WATERMARK_APP_ID = "erp-watermark"
QUARANTINE_TABLE = "erp_quarantine"
MODIFIED_AT = "ModifiedAt"
# A row can become visible with a ModifiedAt below the watermark (a long transaction commits late;
# the generator writes next-morning cancellations with the day before), so each incremental run
# re-reads this far back and drops the rows bronze already holds.
DEFAULT_LOOKBACK = dt.timedelta(days=1)

_EPOCH = dt.datetime(1970, 1, 1)
_NAIVE_US = pa.timestamp("us")
_UTC_US = pa.timestamp("us", tz="UTC")
_LINEAGE = [
    pa.field("_source_table", pa.string()),
    pa.field("_extracted_at", _UTC_US),
    pa.field("_extract_id", pa.string()),
    pa.field("_extract_mode", pa.string()),
]
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source_table", pa.string()),
        pa.field("primary_key", pa.string()),
        pa.field("row", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("_extracted_at", _UTC_US),
        pa.field("_extract_id", pa.string()),
    ]
)
_BAD_VALUE = (pa.ArrowException, TypeError, ValueError, OverflowError)


class ErpSourceError(RuntimeError):
    """The ERP database or one of its tables cannot be read (the URL is shown password-masked).
    `transient`: the database did not answer (worth retrying), rather than lacking something."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass
class ExtractReport:
    source_table: str
    bronze_table: str
    mode: str  # "incremental" | "full"
    rows_read: int
    rows_written: int
    rows_quarantined: int
    watermark_before: str | None
    watermark_after: str | None
    delta_version: int | None
    seconds: float
    columns_added: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bronze_name(source_table: str) -> str:
    """MV_SetupCity -> mv_setup_city, SubCategory -> mv_sub_category (always prefixed mv_)."""
    snake = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", source_table)
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", snake).lower()
    return snake if snake.startswith("mv_") else f"mv_{snake}"


def extract_all(
    lake: Lake,
    erp_url: str,
    *,
    full: bool = False,
    on_table: Callable[[ExtractReport], None] | None = None,
) -> list[ExtractReport]:
    """Extract every ERP table in ERP_TABLES order over one database engine."""
    engine = _engine(erp_url)
    reports = []
    try:
        for name in ERP_TABLES:
            reports.append(extract_table(lake, erp_url, name, full=full, engine=engine))
            if on_table is not None:
                on_table(reports[-1])
    finally:
        engine.dispose()
    return reports


def extract_table(
    lake: Lake,
    erp_url: str,
    source_table: str,
    *,
    full: bool = False,
    chunk_rows: int = 50_000,
    engine: sa.Engine | None = None,
    lookback: dt.timedelta = DEFAULT_LOOKBACK,
) -> ExtractReport:
    """Append the rows changed since the stored watermark to bronze (or, with full=True, replace
    bronze with a snapshot of the whole table). A run with nothing new commits nothing."""
    if source_table not in ERP_TABLES:
        raise ValueError(
            f"unknown ERP table {source_table!r}; expected one of {', '.join(ERP_TABLES)}"
        )
    if chunk_rows < 1 or lookback < dt.timedelta(0):
        raise ValueError(f"need chunk_rows >= 1 and lookback >= 0, got {chunk_rows}, {lookback}")
    started = time.perf_counter()
    own_engine = engine is None
    engine = _engine(erp_url) if engine is None else engine
    try:
        return _extract(lake, engine, source_table, full, chunk_rows, lookback, started)
    finally:
        if own_engine:
            engine.dispose()


def _extract(
    lake: Lake,
    engine: sa.Engine,
    source_table: str,
    full: bool,
    chunk_rows: int,
    lookback: dt.timedelta,
    started: float,
) -> ExtractReport:
    source = _reflect(engine, source_table)
    options = lake.storage_options
    uri = lake.table_uri(f"bronze.{bronze_name(source_table)}")
    bronze = open_table(uri, options)
    stored = None if bronze is None else bronze.transaction_version(WATERMARK_APP_ID)
    watermark = None if stored is None else _EPOCH + dt.timedelta(microseconds=stored)
    watermark_before = None if watermark is None else watermark.isoformat()

    # Untyped columns: the driver hands over what the database really stores (SQLite keeps
    # 'abc' in an INTEGER column), so one bad value is quarantined instead of failing the read.
    raw = sa.table(source_table, *[sa.column(c.name) for c in source.columns])
    query = sa.select(*raw.c)
    since = None if full or watermark is None else watermark - lookback
    if since is not None:
        modified = raw.c[MODIFIED_AT]
        query = query.where(sa.or_(modified >= sa.literal(since, sa.DateTime), modified.is_(None)))
    scan = _Scan(source, full, watermark, extracted_at=dt.datetime.now(dt.UTC))
    quarantine_uri = lake.table_uri(f"bronze.{QUARANTINE_TABLE}")
    rows_read = 0
    with tempfile.TemporaryDirectory(prefix="erp-extract-") as tmp:
        # Spooled to local disk: the quarantine must commit before the data, and only the whole
        # scan tells which rows are bad and whether anything is new at all.
        data = _Spool(Path(tmp) / "data.arrows", scan.schema)
        bad = _Spool(Path(tmp) / "quarantine.arrows", QUARANTINE_SCHEMA)
        with engine.connect() as conn:
            # Read first, so the watermark is known before the write; later commits wait a run.
            scan.upper = _upper_bound(conn, raw)
            scan.known = _known_rows(bronze, scan.key, since)
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(
                query
            )
            for rows in result.partitions():
                rows_read += len(rows)
                good, problems = scan.split(rows)
                data.write(good)
                if problems:
                    if scan.quarantined is None:
                        scan.quarantined = _quarantined(quarantine_uri, options, source_table)
                    bad.write(scan.quarantine_batch(rows, problems))
        if bad.rows:
            write_deltalake(
                quarantine_uri,
                bad.reader(),
                mode="append",
                storage_options=options,
                commit_properties=_commit(f"erp-quarantine:{source_table}", scan.upper),
            )
        columns_added: list[str] = []
        if full or data.rows:
            before = set() if bronze is None else set(pa.schema(bronze.schema()).names)
            write_deltalake(
                uri,
                data.reader(),
                mode="overwrite" if full else "append",
                schema_mode="overwrite" if full else "merge",
                storage_options=options,
                commit_properties=_commit(WATERMARK_APP_ID, scan.upper),
            )
            columns_added = [n for n in scan.schema.names if before and n not in before]
            bronze = open_table(uri, options)
            watermark = scan.upper or watermark
    return ExtractReport(
        source_table=source_table,
        bronze_table=bronze_name(source_table),
        mode="full" if full else "incremental",
        rows_read=rows_read,
        rows_written=data.rows,
        rows_quarantined=bad.rows,
        watermark_before=watermark_before,
        watermark_after=None if watermark is None else watermark.isoformat(),
        delta_version=None if bronze is None else bronze.version(),
        seconds=round(time.perf_counter() - started, 3),
        columns_added=columns_added,
    )


class _Scan:
    """Turns chunks of raw source rows into typed bronze batches and quarantine rows."""

    def __init__(
        self, source: sa.Table, full: bool, watermark: dt.datetime | None, extracted_at: dt.datetime
    ):
        self.source_table = source.name
        self.names = [c.name for c in source.columns]
        self.fields = [pa.field(c.name, _arrow_type(c.type)) for c in source.columns]
        self.schema = pa.schema(self.fields + _LINEAGE)
        # Without a primary key (e.g. a view) the whole row is its identity.
        self.key = [c.name for c in source.primary_key.columns] or self.names
        self.watermark = watermark
        self.upper: dt.datetime | None = None
        self.known: set[tuple] = set()
        self.quarantined: set[tuple[str, str]] | None = None
        self.lineage = [
            pa.scalar(source.name, pa.string()),
            pa.scalar(extracted_at, _UTC_US),
            pa.scalar(str(uuid.uuid4()), pa.string()),
            pa.scalar("full" if full else "incremental", pa.string()),
        ]

    def split(self, rows: Sequence[sa.Row]) -> tuple[pa.RecordBatch, dict[int, list[str]]]:
        """The rows to land (typed, with lineage) and the reasons of the rows to quarantine."""
        problems: dict[int, list[str]] = defaultdict(list)
        arrays = []
        for f, values in zip(self.fields, zip(*rows, strict=True), strict=True):
            try:
                arrays.append(_to_arrow(values, f.type))
            except _BAD_VALUE:
                arrays.append(_value_by_value(f, values, problems))
        batch = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(self.fields))
        modified = batch.column(MODIFIED_AT)
        for i in map(int, np.flatnonzero(_mask(modified.is_null()))):
            if i not in problems:
                problems[i].append(f"column {MODIFIED_AT!r} is NULL, so the row cannot be tracked")
        keep = np.ones(len(rows), dtype=bool)
        keep[list(problems)] = False
        # Committed after the upper bound was read: the next run takes them.
        keep &= _mask(pc.less_equal(modified, self.upper)) if self.upper else False
        if self.known:
            # Only rows at or before the watermark can be in bronze already (lookback and ties).
            maybe = np.flatnonzero(keep & _mask(pc.less_equal(modified, self.watermark)))
            values = [batch.column(c).take(maybe).to_pylist() for c in [*self.key, MODIFIED_AT]]
            for i, key in zip(maybe, zip(*values, strict=True), strict=True):
                keep[i] = key not in self.known
        good = batch.filter(pa.array(keep))
        n = good.num_rows
        lineage = [pa.repeat(value, n) for value in self.lineage]
        return pa.RecordBatch.from_arrays([*good.columns, *lineage], schema=self.schema), problems

    def quarantine_batch(self, rows: Sequence[sa.Row], problems: dict[int, list[str]]) -> pa.Table:
        """Quarantine rows (raw values as JSON), minus those an earlier run already quarantined."""
        out = []
        for i, reasons in sorted(problems.items()):
            values = dict(zip(self.names, rows[i], strict=True))
            key = json.dumps({k: values[k] for k in self.key}, default=str)
            row = json.dumps(values, default=str)
            if (key, row) not in self.quarantined:
                self.quarantined.add((key, row))
                out.append((key, row, "; ".join(reasons)))
        keys, row_json, reasons = zip(*out, strict=True) if out else ((), (), ())
        n = len(out)
        return pa.table(
            [
                pa.repeat(self.lineage[0], n),
                pa.array(keys, pa.string()),
                pa.array(row_json, pa.string()),
                pa.array(reasons, pa.string()),
                pa.repeat(self.lineage[1], n),
                pa.repeat(self.lineage[2], n),
            ],
            schema=QUARANTINE_SCHEMA,
        )


class _Spool:
    """Batches on local disk (Arrow IPC, lz4) until the run knows what to commit: memory stays
    bounded by one chunk, and the commit is one streamed write."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = str(path)
        self.rows = 0
        options = pa.ipc.IpcWriteOptions(compression="lz4")
        self._writer = pa.ipc.new_stream(self.path, schema, options=options)

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows:
            self._writer.write(batch)
            self.rows += batch.num_rows

    def reader(self) -> pa.RecordBatchReader:
        self._writer.close()
        return pa.ipc.open_stream(pa.memory_map(self.path))


def check_connection(
    erp_url: str,
    attempts: int = 3,
    first_wait: float = 1.0,
    on_retry: Callable[[int, float, str], None] = lambda *_: None,
) -> None:
    """Connect once to the ERP database, retrying a failed connection up to `attempts` times
    with doubling waits (`on_retry(attempt, wait, error)` before each wait); ErpSourceError
    (transient) naming the database when it never answers. A connection attempt gives up
    after 10 s (PostgreSQL), so nothing here waits long without saying so."""
    engine = _engine(erp_url)
    if engine.url.get_backend_name() == "postgresql":
        engine = sa.create_engine(engine.url, connect_args={"connect_timeout": 10})
    started, wait = time.monotonic(), first_wait
    try:
        for attempt in range(1, attempts + 1):
            try:
                with engine.connect():
                    return
            except sa.exc.DBAPIError as exc:
                error = " ".join(str(exc.orig).split())
                if attempt == attempts:
                    raise ErpSourceError(
                        f"the ERP database at {mask_password(erp_url)} did not answer after "
                        f"{attempts} attempts over {time.monotonic() - started:.0f}s: {error}",
                        transient=True,
                    ) from exc
                on_retry(attempt, wait, error)
                time.sleep(wait)
                wait *= 2
    finally:
        engine.dispose()


def _engine(erp_url: str) -> sa.Engine:
    url = sa.engine.make_url(erp_url)
    # SQLite would silently create an empty database at a mistyped path.
    database = url.database if url.get_backend_name() == "sqlite" else None
    if database not in (None, "", ":memory:") and not Path(database).exists():
        raise ErpSourceError(
            f"no ERP database at {mask_password(erp_url)} "
            "(run `lakehouse generate` first or set ERP_DB_URL)"
        )
    return sa.create_engine(url)


def _reflect(engine: sa.Engine, name: str) -> sa.Table:
    """The source table as the database describes it today (new columns included)."""
    url = mask_password(engine.url.render_as_string(hide_password=False))
    try:
        table = sa.Table(name, sa.MetaData(), autoload_with=engine)
    except sa.exc.NoSuchTableError:
        raise ErpSourceError(f"the ERP database at {url} has no table {name!r}") from None
    except sa.exc.DBAPIError as exc:
        raise ErpSourceError(
            f"cannot read the ERP database at {url}: {exc.orig}", transient=True
        ) from exc
    if MODIFIED_AT not in table.c:
        raise ValueError(
            f"{name} has no {MODIFIED_AT} column, which incremental extraction needs "
            f"(columns: {', '.join(table.c.keys())})"
        )
    return table


def _arrow_type(sql_type: sa.types.TypeEngine) -> pa.DataType:
    if isinstance(sql_type, sa.Boolean):
        return pa.bool_()
    if isinstance(sql_type, sa.Integer):  # BigInteger and SmallInteger too
        return pa.int64()
    if isinstance(sql_type, sa.Numeric):  # Float is a Numeric; NUMERIC(14,2) fits a double
        return pa.float64()
    if isinstance(sql_type, sa.DateTime):
        return _NAIVE_US
    if isinstance(sql_type, sa.Date):
        return pa.date32()
    return pa.string()  # String, Text and anything else


def _to_arrow(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    """Convert values to `type_`, raising on any value that is not valid for it."""
    if pa.types.is_string(type_):
        try:
            return pa.array(values, type_)
        except _BAD_VALUE:
            # Every value has a text form; str() keeps what the driver returned.
            texts = [v if v is None or isinstance(v, str) else str(v) for v in values]
            return pa.array(texts, type_)
    # Inferred, then a safe cast: parses ISO date strings, refuses 1.5 as an integer. Mixed
    # Python types fail inference and are converted one by one instead.
    return pa.array(values).cast(type_)


def _value_by_value(f: pa.Field, values: Sequence[Any], problems: dict[int, list[str]]) -> pa.Array:
    """Slow path for a chunk whose column has bad values: find them; they become null."""
    pieces = []
    for i, value in enumerate(values):
        try:
            pieces.append(_to_arrow([value], f.type))
        except _BAD_VALUE:
            pieces.append(pa.nulls(1, f.type))
            problems[i].append(f"column {f.name!r}: value {value!r} is not a valid {f.type}")
    return pa.concat_arrays(pieces)


def _upper_bound(conn: sa.Connection, raw: sa.TableClause) -> dt.datetime | None:
    """max(ModifiedAt), stepping past values that are not timestamps (SQLite sorts text after
    every date); the scan quarantines those rows."""
    column = raw.c[MODIFIED_AT]
    query = sa.select(sa.func.max(column))
    while (value := conn.execute(query).scalar()) is not None:
        try:
            return _to_arrow([value], _NAIVE_US)[0].as_py()
        except _BAD_VALUE:
            query = sa.select(sa.func.max(column)).where(column < value)
    return None


def _known_rows(bronze: DeltaTable | None, key: list[str], since: dt.datetime | None) -> set:
    """(key..., ModifiedAt) of the bronze rows modified at or after `since`."""
    if bronze is None or since is None:
        return set()
    present = set(pa.schema(bronze.schema()).names)
    columns = [c for c in [*key, MODIFIED_AT] if c in present]
    rows = _scan(bronze, columns, f"\"{MODIFIED_AT}\" >= TIMESTAMP '{since.isoformat()}'")
    return {tuple(r.get(c) for c in [*key, MODIFIED_AT]) for r in rows.to_pylist()}


def _quarantined(uri: str, options: dict[str, str] | None, source_table: str) -> set:
    """(primary_key, row) already quarantined for this table: re-reads never duplicate them."""
    table = open_table(uri, options)
    if table is None:
        return set()
    rows = _scan(table, ["primary_key", "row"], f"source_table = '{source_table}'")
    return set(zip(rows["primary_key"].to_pylist(), rows["row"].to_pylist(), strict=True))


def _scan(table: DeltaTable, columns: list[str], predicate: str) -> pa.Table:
    # delta-rs' own reader: a pyarrow dataset over delta-rs' Python filesystem can abort the
    # interpreter at exit (its fragments are released on an Arrow thread after finalisation).
    return pa.RecordBatchReader.from_stream(table.scan(columns, predicate)).read_all()


def _commit(app_id: str, upper: dt.datetime | None) -> CommitProperties:
    # The watermark travels in the commit of the rows it covers: both land or neither does.
    version = None if upper is None else (upper - _EPOCH) // dt.timedelta(microseconds=1)
    txns = [] if version is None else [Transaction(app_id=app_id, version=version)]
    return CommitProperties(app_transactions=txns)


def _mask(array: pa.Array) -> np.ndarray:
    return array.fill_null(False).to_numpy(zero_copy_only=False)
