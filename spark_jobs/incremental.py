"""What changed upstream since a table was last built, read from Delta logs with delta-rs.

Silver and gold rebuild whole date partitions. The partitions to rebuild are those in which the
upstream table gained files since the upstream version the target last consumed; that version
is kept per (target, source) in the small `_state/consumed_versions` table. The state is written
after a publish, so a crash in between only means the same partitions are rebuilt again, which
gives the same result.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

from lakehouse.core.lake import open_table

STATE_SCHEMA = pa.schema(
    [
        ("target", pa.string()),
        ("source", pa.string()),
        ("version", pa.int64()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class Change:
    """Files a source gained between two versions (`since` None: the table's whole history)."""

    source: str
    since: int | None
    version: int
    paths: list[str]  # absolute URIs of the added data files
    partitions: set[dt.date] | None  # their date partitions, None if not date-partitioned

    @property
    def changed(self) -> bool:
        return self.since is None or self.since != self.version


def _as_date(value: object) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def _actions(table: DeltaTable) -> pa.Table:
    return pa.table(table.get_add_actions(flatten=True))


def changes(
    source: str, uri: str, since: int | None, options: dict[str, str] | None = None
) -> Change | None:
    """What `uri` gained after version `since`; None when the source table does not exist."""
    table = open_table(uri, options)
    if table is None:
        return None
    version = table.version()
    actions = _actions(table)
    part_cols = table.metadata().partition_columns
    if since is not None and since != version:
        before = DeltaTable(uri, version=since, storage_options=options or None)
        old = pa.array(_actions(before).column("path").to_pylist(), pa.string())
        actions = actions.filter(pc.invert(pc.is_in(actions.column("path"), value_set=old)))
    elif since == version:
        actions = actions.slice(0, 0)
    paths = [f"{uri.rstrip('/')}/{p}" for p in actions.column("path").to_pylist()]
    partitions = None
    if part_cols:
        values = actions.column(f"partition.{part_cols[0]}").to_pylist()
        partitions = {_as_date(v) for v in values}
    return Change(source, since, version, paths, partitions)


def partition_range(
    uri: str, options: dict[str, str] | None = None
) -> tuple[dt.date, dt.date] | None:
    """First and last date partition of a table (from its log), None if empty, missing or not
    partitioned."""
    table = open_table(uri, options)
    if table is None or not table.metadata().partition_columns:
        return None
    col = f"partition.{table.metadata().partition_columns[0]}"
    values = [v for v in _actions(table).column(col).to_pylist() if v is not None]
    if not values:
        return None
    dates = [_as_date(v) for v in values]
    return min(dates), max(dates)


def partition_row_counts(uri: str, options: dict[str, str] | None = None) -> dict[dt.date, int]:
    """Rows per date partition of a table, from file statistics (empty if missing)."""
    table = open_table(uri, options)
    if table is None:
        return {}
    actions = _actions(table)
    col = f"partition.{table.metadata().partition_columns[0]}"
    counts: dict[dt.date, int] = {}
    for value, rows in zip(
        actions.column(col).to_pylist(), actions.column("num_records").to_pylist(), strict=True
    ):
        day = _as_date(value)
        counts[day] = counts.get(day, 0) + int(rows or 0)
    return counts


def partition_rows(
    uri: str, dates: set[dt.date] | None, options: dict[str, str] | None = None
) -> int:
    """Rows currently in the given date partitions (all rows for None), from file statistics."""
    if dates is None:
        table = open_table(uri, options)
        return 0 if table is None else int(pc.sum(_actions(table)["num_records"]).as_py() or 0)
    return sum(n for d, n in partition_row_counts(uri, options).items() if d in dates)


def batch_dates(dates: set[dt.date], rows: dict[dt.date, int], max_rows: int) -> list[set[dt.date]]:
    """`dates` in order, cut into batches of at most `max_rows` rows (by `rows` per date); a date
    alone over the limit is a batch of its own."""
    out: list[set[dt.date]] = []
    current: set[dt.date] = set()
    total = 0
    for day in sorted(dates):
        n = rows.get(day, 0)
        if current and total + n > max_rows:
            out.append(current)
            current, total = set(), 0
        current.add(day)
        total += n
    if current:
        out.append(current)
    return out


class ConsumedVersions:
    """The upstream versions each target was last built from."""

    def __init__(self, uri: str, options: dict[str, str] | None = None):
        self.uri = uri
        self.options = options or None

    def get(self, target: str, source: str) -> int | None:
        table = open_table(self.uri, self.options)
        if table is None:
            return None
        batches = [pa.record_batch(b) for b in table.scan()]
        if not batches:
            return None
        rows = pa.Table.from_batches(batches).cast(STATE_SCHEMA)  # scans yield string_view
        mask = pc.and_(pc.equal(rows["target"], target), pc.equal(rows["source"], source))
        rows = rows.filter(mask)
        if rows.num_rows == 0:
            return None
        latest = pc.index(rows["recorded_at"], pc.max(rows["recorded_at"]))
        return int(rows["version"][latest.as_py()].as_py())

    def record(self, target: str, versions: dict[str, int]) -> None:
        now = dt.datetime.now(dt.UTC)
        rows = pa.Table.from_pylist(
            [
                {"target": target, "source": s, "version": v, "recorded_at": now}
                for s, v in versions.items()
            ],
            schema=STATE_SCHEMA,
        )
        table = open_table(self.uri, self.options)
        write_deltalake(
            table if table is not None else self.uri,
            rows,
            mode="append",
            storage_options=self.options,
        )
