"""The thin runner of the silver and gold steps (spark_jobs/steps.py): lake access, what changed
upstream (spark_jobs/incremental.py), and write-audit-publish. A step builds the affected date
partitions (or a whole small table) and then the runner:

1. writes the batch to a staging Delta table (`<lake>/_staging/<layer>/<table>`),
2. validates the staged batch with the table's Great Expectations suite and stores the result in
   `quality.validation_results`,
3. only if every expectation passed, replaces exactly those partitions of the real table (one
   Delta commit, `replaceWhere`), so readers see the old partitions or the new ones, never half.

A failing batch stays in staging (that Delta version is recorded with the validation result) and
the step reports `published=False`; the Dagster asset turns that into a failed blocking check so
nothing downstream runs on it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from expectations import suites
from expectations.gate import ValidationReport, store, validate
from lakehouse.lake import open_table, storage_options
from lakehouse.settings import Settings
from spark_jobs.incremental import (
    Change,
    ConsumedVersions,
    batch_dates,
    changes,
    partition_row_counts,
    partition_rows,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

Dates = set[dt.date] | None  # None: the whole table

PARTITION_COLUMN = {
    "bronze.events": "event_date",
    "silver.events": "event_date",
    "silver.events_quarantine": "event_date",
    "silver.sales": "invoice_date",
    "silver.sales_lines": "invoice_date",
    "silver.sales_quarantine": None,
    "gold.fact_sales_line": "invoice_date",
    "gold.fact_events": "event_date",
    "gold.fact_sessions": "session_date",
    "gold.kpi_minute": "event_date",
    "gold.kpi_hourly": "event_date",
}


@dataclass
class StepResult:
    table: str
    uri: str
    published: bool = False
    skipped: bool = False  # nothing new upstream
    dates: list[str] | None = None  # partitions replaced; None = the whole table
    rows: int = 0  # rows in the batch
    batches: int = 1  # how many pieces it was computed in (TRANSFORM_BATCH_ROWS)
    quarantined: int = 0
    delta_version: int | None = None
    seconds: float = 0.0
    report: ValidationReport | None = None
    sources: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "published": self.published,
            "skipped": self.skipped,
            "partitions": None if self.dates is None else len(self.dates),
            "rows": self.rows,
            "batches": self.batches,
            "quarantined": self.quarantined,
            "delta_version": self.delta_version,
            "seconds": round(self.seconds, 2),
            "validation": self.report.to_dict() if self.report else None,
        }


class GateFailed(RuntimeError):
    """A batch failed its expectations and was left in staging."""

    def __init__(self, result: StepResult):
        self.result = result
        super().__init__(f"{result.table}: {result.report.summary() if result.report else ''}")


def date_sql(column: str, dates: Dates) -> str:
    return (
        " OR ".join([f"{column} = DATE'{d.isoformat()}'" for d in sorted(dates or [])]) or "false"
    )


class Pipeline:
    """Runs steps against one lake through one Spark session."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        now: dt.datetime | None = None,
        on_batch: Callable[[str, int, int, set[dt.date]], None] = lambda *_: None,
    ):
        self.spark = spark
        self.settings = settings
        self.now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        self.on_batch = on_batch  # (table, batch number, batches, dates): progress of long steps
        self._started: dict[str, float] = {}  # per staged table: when staging began
        self._batches: dict[str, int] = {}  # per staged table: batches staged
        self.options = storage_options(settings)
        self.state = ConsumedVersions(
            settings.table_uri("_state", "consumed_versions"), self.options
        )

    # -- lake access -------------------------------------------------------------------

    def uri(self, table: str) -> str:
        layer, name = table.split(".", 1)
        return self.settings.table_uri(layer, name)

    def exists(self, table: str) -> bool:
        return open_table(self.uri(table), self.options) is not None

    def read(self, table: str) -> DataFrame:
        if not self.exists(table):
            raise MissingInput(f"{table} does not exist yet at {self.uri(table)}: build it first")
        return self.spark.read.format("delta").load(self.uri(table))

    def read_dates(self, table: str, dates: Dates) -> DataFrame:
        frame = self.read(table)
        return frame if dates is None else frame.where(date_sql(PARTITION_COLUMN[table], dates))

    def change(self, target: str, source: str, *, full: bool = False) -> Change:
        since = None if full else self.state.get(target, source)
        found = changes(source, self.uri(source), since, self.options)
        if found is None:
            raise MissingInput(f"{source} does not exist yet at {self.uri(source)}: build it first")
        return found

    # -- write-audit-publish -----------------------------------------------------------

    def staging_uri(self, table: str) -> str:
        layer, name = table.split(".", 1)
        return self.settings.table_uri("_staging", f"{layer}/{name}")

    def stage(self, table: str, frame: DataFrame, *, append: bool = False) -> None:
        """Write (or add) a batch of `table` to its staging table."""
        if not append:
            self._started[table] = time.monotonic()
            self._batches[table] = 0
        self._batches[table] += 1
        writer = frame.write.format("delta").mode("append" if append else "overwrite")
        if not append:
            writer = writer.option("overwriteSchema", "true")
        if column := PARTITION_COLUMN.get(table):
            writer = writer.partitionBy(column)
        writer.save(self.staging_uri(table))

    def stage_batches(
        self,
        table: str,
        source: str,
        dates: set[dt.date],
        build: Callable[[set[dt.date]], DataFrame | tuple[DataFrame, ...]],
        also: tuple[str, ...] = (),
    ) -> None:
        """Stage `table` (and the `also` tables, when `build` returns one frame for each) for
        `dates`, in batches of at most TRANSFORM_BATCH_ROWS rows of `source`, so a first build
        or a long backfill keeps Spark's memory bounded; `publish` then validates and publishes
        all the batches together, in one commit."""
        rows = partition_row_counts(self.uri(source), self.options)
        parts = batch_dates(dates, rows, self.settings.transform_batch_rows)
        for i, part in enumerate(parts):
            self.on_batch(table, i + 1, len(parts), part)
            frames = build(part)
            frames = frames if isinstance(frames, tuple) else (frames,)
            for name, frame in zip((table, *also), frames, strict=True):
                self.stage(name, frame, append=i > 0)

    def publish(
        self,
        table: str,
        suite: Callable[[suites.SuiteContext], suites.Suite],
        *,
        dates: Dates = None,
        refs: dict[str, DataFrame] | None = None,
        source_newest: dt.datetime | None = None,
        batch: str = "",
    ) -> StepResult:
        """Validate the staged `table` and, if it passes, replace its `dates` with it."""
        staging = self.staging_uri(table)
        staged_table = open_table(staging, self.options)
        staged = self.spark.read.format("delta").load(staging)
        ctx = suites.SuiteContext(
            now=self.now,
            rows_before=partition_rows(self.uri(table), dates, self.options),
            source_newest=source_newest,
            refs=refs or {},
        )
        report = validate(staged, suite(ctx), table=table, batch=batch or _describe(dates))
        report.staging_uri, report.staging_version = staging, staged_table.version()
        store(self.settings, report)
        result = StepResult(
            table=table,
            uri=self.uri(table),
            dates=None if dates is None else [d.isoformat() for d in sorted(dates)],
            rows=staged_table.count(),
            batches=self._batches.pop(table, 1),
            report=report,
        )
        if report.success:
            self._replace(table, staged, dates)
            result.published = True
            result.delta_version = open_table(self.uri(table), self.options).version()
        result.seconds = time.monotonic() - self._started.pop(table, time.monotonic())
        return result

    def write_quarantine(self, table: str, condition: str | None) -> int:
        """Replace the quarantine rows matching `condition` (all rows for None) with the staged
        ones; their count."""
        self._started.pop(table, None)
        self._batches.pop(table, None)
        self._replace_where(
            table, self.spark.read.format("delta").load(self.staging_uri(table)), condition
        )
        written = self.read(table)
        return int((written if condition is None else written.where(condition)).count())

    def _replace(self, table: str, frame: DataFrame, dates: Dates) -> None:
        column = PARTITION_COLUMN.get(table)
        self._replace_where(table, frame, None if dates is None else date_sql(column, dates))

    def _replace_where(self, table: str, frame: DataFrame, condition: str | None) -> None:
        writer = frame.write.format("delta").mode("overwrite")
        column = PARTITION_COLUMN.get(table)
        if condition is not None and self.exists(table):
            writer = writer.option("replaceWhere", condition)
        else:
            writer = writer.option("overwriteSchema", "true")
            if column:
                writer = writer.partitionBy(column)
        writer.save(self.uri(table))

    def finish(self, target: str, result: StepResult, sources: dict[str, int]) -> StepResult:
        """Record the upstream versions a published step consumed; raise if the gate failed."""
        result.sources = sources
        if not result.published:
            raise GateFailed(result)
        self.state.record(target, sources)
        return result

    def skip(self, table: str, sources: dict[str, int]) -> StepResult:
        table_ = open_table(self.uri(table), self.options)
        return StepResult(
            table=table,
            uri=self.uri(table),
            skipped=True,
            published=False,
            delta_version=table_.version() if table_ else None,
            sources=sources,
        )


class MissingInput(RuntimeError):
    """An upstream table a step reads has not been built."""


def _describe(dates: Dates) -> str:
    if dates is None:
        return "whole table"
    ordered = sorted(dates)
    if not ordered:
        return "no partitions"
    return f"{len(ordered)} partitions {ordered[0]}..{ordered[-1]}"
