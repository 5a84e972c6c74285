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
import inspect
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from expectations import suites
from expectations.gate import ValidationReport, store, validate
from lakehouse.core.lake import Lake, open_table
from spark_jobs.incremental import (
    Change,
    ConsumedVersions,
    batch_dates,
    changes,
    partition_range,
    partition_row_counts,
    partition_rows,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

Dates = set[dt.date] | None  # None: the whole table
SuiteFactory = Callable[[suites.SuiteContext], suites.Suite]


# -- the registry entry of a step (spark_jobs/steps.py lists them) --------------------------


@dataclass(frozen=True)
class Table:
    """A table a step writes: its name (`layer.table`), what it holds, its date partitioning."""

    name: str
    description: str
    partition_column: str | None = None


@dataclass(frozen=True)
class Output(Table):
    """A table a step publishes behind a Great Expectations gate."""

    suite: SuiteFactory | None = None


@dataclass(frozen=True)
class Step:
    """One Spark step, declared once: what it reads, what it writes, how it is checked and the
    code that builds it. The runner lets it read nothing else; Dagster derives the step's
    assets, dependencies, checks, partitions, pool and code version from it.

    `inputs` feed `transform`; `references` are read only by the suites' reference checks
    (keys of the batch must exist there). `run` is the step's body: what changed upstream,
    which partitions to build and how, then stage, validate and publish."""

    outputs: tuple[Output, ...]
    inputs: tuple[str, ...]
    transform: Callable[..., Any]
    run: Callable[..., list[StepResult]]
    references: tuple[str, ...] = ()
    quarantine: Table | None = None
    # the Dagster group (and `lakehouse transform --layer`); by default the layer of its name
    group_name: str | None = None
    # what builds it, as Dagster kinds (a step computed in Python names its libraries)
    kinds: frozenset[str] = frozenset({"spark", "delta"})

    @property
    def name(self) -> str:
        return self.outputs[0].name

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def group(self) -> str:
        return self.group_name or self.layer

    @property
    def tables(self) -> tuple[Table, ...]:
        """Every table the step writes: the gated outputs, then the quarantine."""
        return self.outputs + ((self.quarantine,) if self.quarantine else ())

    @property
    def partitioned(self) -> bool:
        return self.outputs[0].partition_column is not None

    @property
    def reads(self) -> frozenset[str]:
        """What the step may read: its inputs, its references and its own tables."""
        return frozenset(self.inputs + self.references + tuple(t.name for t in self.tables))

    @property
    def code_files(self) -> tuple[Path, ...]:
        """The modules holding its transformation and its body (its code version, with the
        runner's own files)."""
        files = {inspect.getsourcefile(f) for f in (self.transform, self.run)}
        return tuple(sorted(Path(f) for f in files if f))

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


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
    note: str = ""  # what a reader should know about this result

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "note": self.note,
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


@dataclass(frozen=True)
class TransformOptions:
    """The knobs of silver and gold (settings: TRANSFORM_BATCH_ROWS, SILVER_LATENESS_HOURS,
    SILVER_FUTURE_TOLERANCE_MINUTES, INTERACTION_HALF_LIFE_DAYS, QUALITY_*, ML_TEST_DAYS,
    ML_RANKER_*_CUSTOMERS)."""

    batch_rows: int
    lateness: dt.timedelta
    future_tolerance: dt.timedelta
    interaction_half_life_days: float
    thresholds: suites.Thresholds = suites.Thresholds()  # QUALITY_*
    ml_test_days: int = 14  # ML_TEST_DAYS: the recommenders' windows (their feature snapshots)
    # ML_RANKER_TRAINING_CUSTOMERS, ML_RANKER_GENERATOR_CUSTOMERS: the training cutoffs' samples
    ranker_training_customers: int = 20_000
    ranker_generator_customers: int = 100_000


class UndeclaredInput(RuntimeError):
    """A step read a table its registry entry does not declare (spark_jobs/steps.py)."""


class Pipeline:
    """Runs steps against one lake through one Spark session; while a step runs, it may read
    only the tables its registry entry declares (every read is recorded in `reads`)."""

    def __init__(
        self,
        spark: SparkSession,
        lake: Lake,
        options: TransformOptions,
        now: dt.datetime | None = None,
        on_batch: Callable[[str, int, int, set[dt.date]], None] = lambda *_: None,
    ):
        self.spark = spark
        self.lake = lake
        self.config = options
        self.now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        self.on_batch = on_batch  # (table, batch number, batches, dates): progress of long steps
        self._started: dict[str, float] = {}  # per staged table: when staging began
        self._batches: dict[str, int] = {}  # per staged table: batches staged
        self.options = dict(lake.options)
        self.state = ConsumedVersions(lake.table_uri("_state.consumed_versions"), self.options)
        self.step: Step | None = None
        self.reads: dict[str, set[str]] = {}  # step -> tables it read

    def run(self, step: Step, *, dates: Dates = None, full: bool = False) -> list[StepResult]:
        """Run one step: `dates` backfills those partitions, `full` rebuilds from the sources'
        whole history, neither rebuilds what changed upstream. Whole-table steps ignore
        `dates`."""
        with self._running(step):
            return step.run(self, dates=dates, full=full)

    @contextmanager
    def _running(self, step: Step) -> Iterator[None]:
        self.step = step
        self.reads.setdefault(step.name, set())
        try:
            yield
        finally:
            self.step = None

    # -- lake access (only what the running step declares) -------------------------------

    def _declared(self, table: str) -> str:
        if self.step is not None:
            if table not in self.step.reads:
                raise UndeclaredInput(
                    f"step {self.step.name} read {table}, which its entry in spark_jobs/steps.py "
                    f"does not declare (inputs: {', '.join(self.step.inputs)}; references: "
                    f"{', '.join(self.step.references) or '-'})"
                )
            self.reads[self.step.name].add(table)
        return table

    def uri(self, table: str) -> str:
        return self.lake.table_uri(table)

    def exists(self, table: str) -> bool:
        return open_table(self.uri(self._declared(table)), self.options) is not None

    def read(self, table: str) -> DataFrame:
        if not self.exists(table):
            raise MissingInput(f"{table} does not exist yet at {self.uri(table)}: build it first")
        return self.spark.read.format("delta").load(self.uri(table))

    def delta(self, table: str) -> DeltaTable:
        """An input opened with delta-rs, for a step whose work is done in Python (a library
        model Spark cannot fit)."""
        opened = open_table(self.uri(self._declared(table)), self.options)
        if opened is None:
            raise MissingInput(f"{table} does not exist yet at {self.uri(table)}: build it first")
        return opened

    def read_dates(self, table: str, dates: Dates) -> DataFrame:
        frame = self.read(table)
        if dates is None:
            return frame
        return frame.where(date_sql(self._partition_column(table), dates))

    def partition_range(self, table: str) -> tuple[dt.date, dt.date] | None:
        """First and last date partition of an input (None when it has none)."""
        return partition_range(self.uri(self._declared(table)), self.options)

    def all_dates(self, table: str) -> set[dt.date]:
        """Every date between the first and last partition of `table` (empty if it has none)."""
        span = self.partition_range(table)
        if span is None:
            return set()
        return {span[0] + dt.timedelta(days=k) for k in range((span[1] - span[0]).days + 1)}

    def change(self, target: str, source: str, *, full: bool = False) -> Change:
        since = None if full else self.state.get(target, source)
        found = changes(source, self.uri(self._declared(source)), since, self.options)
        if found is None:
            raise MissingInput(f"{source} does not exist yet at {self.uri(source)}: build it first")
        return found

    def _partition_column(self, table: str) -> str:
        """The date partition column of a table, from its Delta log."""
        opened = open_table(self.uri(table), self.options)
        columns = [] if opened is None else opened.metadata().partition_columns
        if not columns:
            raise ValueError(f"{table} is not date-partitioned")
        return columns[0]

    def _written_partition_column(self, table: str) -> str | None:
        """How a table this step writes is partitioned (its registry entry says)."""
        if self.step is None:
            raise RuntimeError(f"{table} is written outside a step")
        return self.step.table(table).partition_column

    # -- write-audit-publish -----------------------------------------------------------

    def staging_uri(self, table: str) -> str:
        return self.lake.path("_staging", *table.split(".", 1))

    def stage(self, table: str, frame: DataFrame, *, append: bool = False) -> None:
        """Write (or add) a batch of `table` to its staging table."""
        if not append:
            self._started[table] = time.monotonic()
            self._batches[table] = 0
        self._batches[table] += 1
        writer = frame.write.format("delta").mode("append" if append else "overwrite")
        if not append:
            writer = writer.option("overwriteSchema", "true")
        if column := self._written_partition_column(table):
            writer = writer.partitionBy(column)
        writer.save(self.staging_uri(table))

    def stage_arrow(self, table: str, data: pa.Table, *, append: bool = False) -> None:
        """`stage` for a batch computed in Python: written with delta-rs (Spark then reads the
        staged table to validate and publish it, as any other)."""
        if not append:
            self._started[table] = time.monotonic()
            self._batches[table] = 0
        self._batches[table] += 1
        column = self._written_partition_column(table)
        write_deltalake(
            self.staging_uri(table),
            data,
            mode="append" if append else "overwrite",
            schema_mode=None if append else "overwrite",
            partition_by=[column] if column else None,
            storage_options=self.options,
        )

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
        rows = partition_row_counts(self.uri(self._declared(source)), self.options)
        parts = batch_dates(dates, rows, self.config.batch_rows)
        for i, part in enumerate(parts):
            self.on_batch(table, i + 1, len(parts), part)
            frames = build(part)
            frames = frames if isinstance(frames, tuple) else (frames,)
            for name, frame in zip((table, *also), frames, strict=True):
                self.stage(name, frame, append=i > 0)

    def publish(
        self,
        table: str,
        *,
        dates: Dates = None,
        refs: Mapping[str, DataFrame] | None = None,
        source_newest: dt.datetime | None = None,
        batch: str = "",
    ) -> StepResult:
        """Validate the staged `table` with its suite and, if it passes, replace its `dates`
        with it. The suite's reference checks read the tables they name, opened on demand
        (declared ones only); `refs` gives some of them instead (e.g. a staged sibling)."""
        assert self.step is not None
        output = self.step.table(table)
        assert isinstance(output, Output) and output.suite is not None, table
        staging = self.staging_uri(table)
        staged_table = open_table(staging, self.options)
        staged = self.spark.read.format("delta").load(staging)
        ctx = suites.SuiteContext(
            now=self.now,
            rows_before=partition_rows(self.uri(table), dates, self.options),
            source_newest=source_newest,
            refs=_LazyTables(self.read, refs or {}),
            thresholds=self.config.thresholds if self.config else suites.Thresholds(),
        )
        report = validate(staged, output.suite(ctx), table=table, batch=batch or _describe(dates))
        report.staging_uri, report.staging_version = staging, staged_table.version()
        store(self.lake, report)
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
            trim(staged_table)
        result.seconds = time.monotonic() - self._started.pop(table, time.monotonic())
        return result

    def write_quarantine(self, table: str, condition: str | None) -> int:
        """Replace the quarantine rows matching `condition` (all rows for None) with the staged
        ones; their count."""
        self._started.pop(table, None)
        self._batches.pop(table, None)
        staging = self.staging_uri(table)
        self._replace_where(table, self.spark.read.format("delta").load(staging), condition)
        trim(open_table(staging, self.options))
        written = self.read(table)
        return int((written if condition is None else written.where(condition)).count())

    def _replace(self, table: str, frame: DataFrame, dates: Dates) -> None:
        column = self._written_partition_column(table)
        self._replace_where(table, frame, None if dates is None else date_sql(column, dates))

    def _replace_where(self, table: str, frame: DataFrame, condition: str | None) -> None:
        writer = frame.write.format("delta").mode("overwrite")
        column = self._written_partition_column(table)
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


def trim(staged: DeltaTable) -> None:
    """Drop a published staging table's older versions and the files of killed attempts: each
    run overwrites staging, and without this it would grow by a copy of the table per run."""
    staged.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False, full=True)


class MissingInput(RuntimeError):
    """An upstream table a step reads has not been built."""


def _describe(dates: Dates) -> str:
    if dates is None:
        return "whole table"
    ordered = sorted(dates)
    if not ordered:
        return "no partitions"
    return f"{len(ordered)} partitions {ordered[0]}..{ordered[-1]}"


class _LazyTables(Mapping):
    """Tables read on first access (a suite's reference checks read only what they need)."""

    def __init__(self, read: Callable[[str], DataFrame], given: Mapping[str, DataFrame]):
        self._read = read
        self._frames: dict[str, DataFrame] = dict(given)

    def __getitem__(self, table: str) -> DataFrame:
        if table not in self._frames:
            self._frames[table] = self._read(table)
        return self._frames[table]

    def __iter__(self) -> Iterator[str]:
        return iter(self._frames)

    def __len__(self) -> int:
        return len(self._frames)
