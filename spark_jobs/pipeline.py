"""The thin runner of the silver and gold jobs: plan, build, write-audit-publish.

Each step works out what changed upstream (spark_jobs/incremental.py), builds the affected date
partitions (or a whole small table) with the plain functions of silver_events/silver_erp/gold,
and then:

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
from functools import partial
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from expectations import suites
from expectations.gate import ValidationReport, store, validate
from lakehouse.lake import open_table, storage_options
from lakehouse.settings import Settings
from spark_jobs import gold, silver_erp, silver_events
from spark_jobs.incremental import (
    Change,
    ConsumedVersions,
    changes,
    partition_range,
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


def _date_sql(column: str, dates: Dates) -> str:
    return (
        " OR ".join([f"{column} = DATE'{d.isoformat()}'" for d in sorted(dates or [])]) or "false"
    )


class Pipeline:
    """Runs steps against one lake through one Spark session."""

    def __init__(self, spark: SparkSession, settings: Settings, now: dt.datetime | None = None):
        self.spark = spark
        self.settings = settings
        self.now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
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
        return frame if dates is None else frame.where(_date_sql(PARTITION_COLUMN[table], dates))

    def change(self, target: str, source: str, *, full: bool = False) -> Change:
        since = None if full else self.state.get(target, source)
        found = changes(source, self.uri(source), since, self.options)
        if found is None:
            raise MissingInput(f"{source} does not exist yet at {self.uri(source)}: build it first")
        return found

    # -- write-audit-publish -----------------------------------------------------------

    def publish(
        self,
        table: str,
        frame: DataFrame,
        suite: Callable[[suites.SuiteContext], suites.Suite],
        *,
        dates: Dates = None,
        refs: dict[str, DataFrame] | None = None,
        source_newest: dt.datetime | None = None,
        batch: str = "",
    ) -> StepResult:
        """Stage `frame`, validate it, and replace `dates` of `table` with it if it passes."""
        started = time.monotonic()
        layer, name = table.split(".", 1)
        staging = self.settings.table_uri("_staging", f"{layer}/{name}")
        column = PARTITION_COLUMN.get(table)
        writer = frame.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        if column:
            writer = writer.partitionBy(column)
        writer.save(staging)
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
            report=report,
        )
        if report.success:
            self._replace(table, staged, dates)
            result.published = True
            result.delta_version = open_table(self.uri(table), self.options).version()
        result.seconds = time.monotonic() - started
        return result

    def write_quarantine(self, table: str, frame: DataFrame, condition: str | None) -> int:
        """Replace the quarantine rows matching `condition` (all rows for None); their count,
        read back from the table rather than by computing `frame` a second time."""
        self._replace_where(table, frame, condition)
        written = self.read(table)
        return int((written if condition is None else written.where(condition)).count())

    def _replace(self, table: str, frame: DataFrame, dates: Dates) -> None:
        column = PARTITION_COLUMN.get(table)
        self._replace_where(table, frame, None if dates is None else _date_sql(column, dates))

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


def _all_dates(p: Pipeline, table: str) -> set[dt.date]:
    """Every date between the first and last partition of `table` (empty if it has none)."""
    span = partition_range(p.uri(table), p.options)
    if span is None:
        return set()
    return {span[0] + dt.timedelta(days=k) for k in range((span[1] - span[0]).days + 1)}


def _neighbours(dates: set[dt.date], days: int = 1) -> set[dt.date]:
    return {d + dt.timedelta(days=k) for d in dates for k in range(-days, days + 1)}


def _newest(frame: DataFrame, column: str) -> dt.datetime | None:
    return frame.agg(F.max(column)).collect()[0][0]


# -- silver -------------------------------------------------------------------------------

ERP_SOURCES = {
    "silver.geography": ["bronze.mv_setup_city", "bronze.mv_setup_area"],
    "silver.product_hierarchy": ["bronze.mv_category", "bronze.mv_sub_category"],
    "silver.brands": ["bronze.mv_brand"],
    "silver.customers": ["bronze.mv_setup_customer"],
    "silver.products": ["bronze.mv_setup_product"],
}


def _rebuild(
    p: Pipeline, target: str, sources: list[str], full: bool
) -> tuple[bool, dict[str, int]]:
    found = [p.change(target, s, full=full) for s in sources]
    return any(c.changed for c in found) or not p.exists(target), {
        c.source: c.version for c in found
    }


def silver_reference(
    p: Pipeline, *, target: str, dates: Dates = None, full: bool = False
) -> StepResult:
    """silver.geography / product_hierarchy / brands / customers / products: rebuilt whole from
    every extracted version when any of their bronze tables changed (they are small, and SCD2
    needs each key's whole history anyway)."""
    sources = ERP_SOURCES[target]
    changed, versions = _rebuild(p, target, sources, full)
    if not changed:
        return p.skip(target, versions)
    inputs = [p.read(s) for s in sources]
    refs: dict[str, DataFrame] = {}
    if target == "silver.geography":
        frame = silver_erp.geography(*inputs)
        suite = suites.reference("silver_geography", "area_id", ["city_id", "city_name", "region"])
    elif target == "silver.product_hierarchy":
        frame = silver_erp.product_hierarchy(*inputs)
        suite = suites.reference("silver_product_hierarchy", "subcategory_id", ["category_name"])
    elif target == "silver.brands":
        frame = silver_erp.brands(*inputs)
        suite = suites.reference("silver_brands", "brand_id", ["brand_name"])
    elif target == "silver.customers":
        frame, suite = silver_erp.customers(*inputs), suites.silver_customers
        refs = {"silver.geography": p.read("silver.geography")}
    else:
        frame, suite = silver_erp.products(*inputs), suites.silver_products
        refs = {n: p.read(n) for n in ("silver.product_hierarchy", "silver.brands")}
    return p.finish(target, p.publish(target, frame, suite, refs=refs), versions)


def silver_sales(p: Pipeline, *, dates: Dates = None, full: bool = False) -> list[StepResult]:
    """silver.sales + silver.sales_lines (+ silver.sales_quarantine) for the invoice dates that
    gained header or line versions in bronze (or `dates` for a backfill)."""
    target = "silver.sales"
    headers, lines = p.read("bronze.mv_sales"), p.read("bronze.mv_sales_detail")
    found = [p.change(target, s, full=full) for s in ("bronze.mv_sales", "bronze.mv_sales_detail")]
    versions = {c.source: c.version for c in found}
    invoice_day = F.to_date("InvoiceDate").alias("d")
    if dates is None and not full and all(c.since is not None for c in found):
        touched = [c for c in found if c.paths]
        if not touched:
            return [p.skip(t, versions) for t in ("silver.sales", "silver.sales_lines")]
        ids = None
        for c in touched:
            new = p.spark.read.parquet(*c.paths).select("InvoiceID").distinct()
            ids = new if ids is None else ids.unionByName(new).distinct()
        days = headers.join(ids, "InvoiceID", "left_semi").select(invoice_day).distinct()
        dates = {r["d"] for r in days.collect() if r["d"] is not None}
    sales_dates = (
        headers if dates is None else headers.where(F.to_date("InvoiceDate").isin(list(dates)))
    )
    ids = sales_dates.select("InvoiceID").distinct()
    known_invoices = headers.select(F.col("InvoiceID").alias("id")).distinct()
    known_customers = p.read("silver.customers").select(F.col("customer_id").alias("id")).distinct()
    known_products = p.read("silver.products").select(F.col("product_id").alias("id")).distinct()
    sales, sales_lines, quarantine = silver_erp.sales(
        sales_dates,
        lines.join(ids, "InvoiceID", "left_semi"),
        known_invoices,
        known_customers,
        known_products,
    )
    refs = {
        "silver.customers": p.read("silver.customers"),
        "silver.products": p.read("silver.products"),
    }
    newest = _newest(sales_dates, "InvoiceDate")
    header_result = p.publish(
        target, sales, suites.silver_sales, dates=dates, refs=refs, source_newest=newest
    )
    if not header_result.published:
        return [p.finish(target, header_result, versions)]
    staged_sales = p.spark.read.format("delta").load(
        p.settings.table_uri("_staging", "silver/sales")
    )
    line_result = p.publish(
        "silver.sales_lines",
        sales_lines,
        suites.silver_sales_lines,
        dates=dates,
        refs={**refs, "silver.sales": staged_sales},
    )
    p.finish("silver.sales_lines", line_result, versions)
    condition = (
        None if dates is None else f"invoice_date IS NULL OR {_date_sql('invoice_date', dates)}"
    )
    bad = quarantine.unionByName(silver_erp.orphan_lines(lines, known_invoices))
    header_result.quarantined = p.write_quarantine("silver.sales_quarantine", bad, condition)
    return [p.finish(target, header_result, versions), line_result]


def silver_events_step(p: Pipeline, *, dates: Dates = None, full: bool = False) -> list[StepResult]:
    """silver.events + silver.events_quarantine for the event dates bronze gained rows in (and a
    day either side, whose sessions may change), or `dates` for a backfill."""
    target = "silver.events"
    found = p.change(target, "bronze.events", full=full or dates is not None)
    dims = {s: p.change(target, s, full=full) for s in ("silver.customers", "silver.products")}
    versions = {"bronze.events": found.version, **{s: c.version for s, c in dims.items()}}
    if dates is None and found.since is not None:
        dates = set(found.partitions or set())
        if any(c.changed for c in dims.values()) and p.exists("silver.events_quarantine"):
            # master data arrived: give events quarantined as orphans another chance
            orphans = p.read("silver.events_quarantine").where(
                F.col("reason").isin(list(silver_events.ORPHAN_REASONS))
            )
            dates |= {r[0] for r in orphans.select("event_date").distinct().collect()}
        if not dates:
            return [p.skip(target, versions)]
        dates = _neighbours(dates)
    if dates is None:
        dates = _all_dates(p, "bronze.events")
        if not dates:
            return [p.skip(target, versions)]
    customers, products = p.read("silver.customers"), p.read("silver.products")
    bronze = p.read_dates("bronze.events", _neighbours(dates))
    rows, quarantine = silver_events.build(
        bronze,
        customers,
        products,
        sorted(dates),
        lateness=dt.timedelta(hours=p.settings.silver_lateness_hours),
        future_tolerance=dt.timedelta(minutes=p.settings.silver_future_tolerance_minutes),
    )
    tolerance = dt.timedelta(minutes=p.settings.silver_future_tolerance_minutes).total_seconds()
    in_dates = p.read_dates("bronze.events", dates)
    newest = _newest(
        in_dates.where(
            F.col("event_time").cast("long") <= F.col("kafka_timestamp").cast("long") + tolerance
        ),
        "event_time",
    )
    result = p.publish(
        target,
        rows,
        suites.silver_events,
        dates=dates,
        refs={"silver.customers": customers, "silver.products": products},
        source_newest=newest,
    )
    if result.published:
        result.quarantined = p.write_quarantine(
            "silver.events_quarantine", quarantine, _date_sql("event_date", dates)
        )
    return [p.finish(target, result, versions)]


# -- gold ---------------------------------------------------------------------------------

GOLD_DIMS = {
    "gold.dim_geography": ["silver.geography"],
    "gold.dim_customer": ["silver.customers", "silver.geography"],
    "gold.dim_product": ["silver.products", "silver.product_hierarchy", "silver.brands"],
    "gold.dim_date": ["silver.events", "silver.sales"],
}


def gold_dimension(
    p: Pipeline, *, target: str, dates: Dates = None, full: bool = False
) -> StepResult:
    changed, versions = _rebuild(p, target, GOLD_DIMS[target], full)
    if not changed:
        return p.skip(target, versions)
    if target == "gold.dim_geography":
        frame = gold.dim_geography(p.read("silver.geography"))
        suite = suites.reference("gold_dim_geography", "area_id", ["city_name", "region"])
    elif target == "gold.dim_customer":
        frame = gold.dim_customer(p.read("silver.customers"), p.read("silver.geography"))
        suite = suites.silver_customers
    elif target == "gold.dim_product":
        frame = gold.dim_product(
            p.read("silver.products"), p.read("silver.product_hierarchy"), p.read("silver.brands")
        )
        suite = suites.silver_products
    else:
        spans = [partition_range(p.uri(t), p.options) for t in ("silver.events", "silver.sales")]
        spans = [s for s in spans if s]
        today = p.now.date()
        first = min([s[0] for s in spans], default=today)
        last = max([s[1] for s in spans], default=today)
        frame = gold.dim_date(p.spark, first, last)
        suite = suites.reference("gold_dim_date", "date_key", ["date", "year_month"])
    refs = {
        "silver.geography": p.read("silver.geography"),
        "silver.product_hierarchy": p.read("silver.product_hierarchy"),
        "silver.brands": p.read("silver.brands"),
    }
    return p.finish(target, p.publish(target, frame, suite, refs=refs), versions)


def _changed_dates(
    p: Pipeline, target: str, source: str, dates: Dates, full: bool
) -> tuple[Dates, dict[str, int]]:
    found = p.change(target, source, full=full or dates is not None)
    if dates is not None:
        return dates, {source: found.version}
    if found.since is None:
        return _all_dates(p, source), {source: found.version}
    return set(found.partitions or set()), {source: found.version}


def _gold_refs(p: Pipeline, *names: str) -> dict[str, DataFrame]:
    return {n: p.read(n) for n in names}


def gold_fact_sales_line(p: Pipeline, *, dates: Dates = None, full: bool = False) -> StepResult:
    target = "gold.fact_sales_line"
    dates, versions = _changed_dates(p, target, "silver.sales_lines", dates, full)
    if not dates:
        return p.skip(target, versions)
    sales = p.read_dates("silver.sales", dates)
    frame = gold.fact_sales_line(
        sales,
        p.read_dates("silver.sales_lines", dates),
        p.read("silver.customers"),
        p.read("silver.products"),
    )
    refs = _gold_refs(
        p, "gold.dim_customer", "gold.dim_product", "gold.dim_geography", "gold.dim_date"
    )
    result = p.publish(
        target,
        frame,
        suites.fact_sales_line,
        dates=dates,
        refs=refs,
        source_newest=_newest(sales, "invoice_time"),
    )
    return p.finish(target, result, versions)


def gold_fact_events(p: Pipeline, *, dates: Dates = None, full: bool = False) -> StepResult:
    target = "gold.fact_events"
    dates, versions = _changed_dates(p, target, "silver.events", dates, full)
    if not dates:
        return p.skip(target, versions)
    events = p.read_dates("silver.events", dates)
    refs = _gold_refs(p, "gold.dim_customer", "gold.dim_product", "gold.dim_date")
    result = p.publish(
        target,
        gold.fact_events(events),
        suites.fact_events,
        dates=dates,
        refs=refs,
        source_newest=_newest(events, "event_time"),
    )
    return p.finish(target, result, versions)


def gold_fact_sessions(p: Pipeline, *, dates: Dates = None, full: bool = False) -> StepResult:
    target = "gold.fact_sessions"
    dates, versions = _changed_dates(p, target, "silver.events", dates, full)
    if not dates:
        return p.skip(target, versions)
    # a session filed under day D may have events on D+1; one started on D-1 may change with D
    dates = dates | {d - dt.timedelta(days=1) for d in dates}
    events = p.read_dates("silver.events", _neighbours(dates))
    refs = _gold_refs(p, "gold.dim_date")
    result = p.publish(
        target,
        gold.fact_sessions(events, sorted(dates)),
        suites.fact_sessions,
        dates=dates,
        refs=refs,
    )
    return p.finish(target, result, versions)


def gold_kpis(p: Pipeline, *, grain: str, dates: Dates = None, full: bool = False) -> StepResult:
    target = f"gold.kpi_{grain}ly" if grain == "hour" else f"gold.kpi_{grain}"
    dates, versions = _changed_dates(p, target, "silver.events", dates, full)
    if not dates:
        return p.skip(target, versions)
    frame = gold.kpis(p.read_dates("silver.events", dates), grain)
    result = p.publish(target, frame, suites.kpis(target.replace(".", "_")), dates=dates)
    return p.finish(target, result, versions)


def gold_interactions(p: Pipeline, *, dates: Dates = None, full: bool = False) -> StepResult:
    """Rebuilt whole when either fact changed: time decay moves every weight as time passes."""
    target = "gold.customer_product_interactions"
    changed, versions = _rebuild(p, target, ["gold.fact_events", "gold.fact_sales_line"], full)
    if not changed:
        return p.skip(target, versions)
    span = partition_range(p.uri("gold.fact_events"), p.options)
    as_of = span[1] if span else p.now.date()
    frame = gold.customer_product_interactions(
        p.read("gold.fact_events"),
        p.read("gold.fact_sales_line"),
        as_of,
        p.settings.interaction_half_life_days,
    )
    refs = _gold_refs(p, "gold.dim_customer", "gold.dim_product")
    return p.finish(
        target, p.publish(target, frame, suites.customer_product_interactions, refs=refs), versions
    )


# -- everything, in dependency order --------------------------------------------------------

# Every step takes (pipeline, *, dates, full); whole-table steps rebuild whole and ignore dates.
STEPS: dict[str, Callable[..., StepResult | list[StepResult]]] = {
    **{t: partial(silver_reference, target=t) for t in ERP_SOURCES},
    "silver.sales": silver_sales,
    "silver.events": silver_events_step,
    **{t: partial(gold_dimension, target=t) for t in GOLD_DIMS},
    "gold.fact_sales_line": gold_fact_sales_line,
    "gold.fact_events": gold_fact_events,
    "gold.fact_sessions": gold_fact_sessions,
    "gold.kpi_minute": partial(gold_kpis, grain="minute"),
    "gold.kpi_hourly": partial(gold_kpis, grain="hour"),
    "gold.customer_product_interactions": gold_interactions,
}


def run_step(
    p: Pipeline, step: str, *, dates: Dates = None, full: bool = False
) -> list[StepResult]:
    out = STEPS[step](p, dates=dates, full=full)
    return out if isinstance(out, list) else [out]


def run_all(
    p: Pipeline,
    *,
    layers: tuple[str, ...] = ("silver", "gold"),
    dates: Dates = None,
    full: bool = False,
    on_step: Callable[[str, list[StepResult]], None] = lambda *_: None,
) -> list[StepResult]:
    results = []
    for step in STEPS:
        if step.split(".")[0] in layers:
            out = run_step(p, step, dates=dates, full=full)
            on_step(step, out)
            results += out
    return results
