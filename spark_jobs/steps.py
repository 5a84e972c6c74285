"""The silver and gold steps, in dependency order: each works out what changed upstream, builds
it with the plain functions of silver_events/silver_erp/gold, and stages, validates and
publishes it through the runner (spark_jobs/pipeline.py). Every step takes
`(pipeline, *, dates, full)`: `dates` backfills those partitions, `full` rebuilds from the
sources' whole history; whole-table steps rebuild whole and ignore `dates`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from expectations import suites
from spark_jobs import gold, silver_erp, silver_events
from spark_jobs.incremental import partition_range
from spark_jobs.pipeline import Dates, Pipeline, StepResult, date_sql

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


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
    p.stage(target, frame)
    return p.finish(target, p.publish(target, suite, refs=refs), versions)


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
    p.stage(target, sales)
    header_result = p.publish(
        target, suites.silver_sales, dates=dates, refs=refs, source_newest=newest
    )
    if not header_result.published:
        return [p.finish(target, header_result, versions)]
    staged_sales = p.spark.read.format("delta").load(p.staging_uri(target))
    p.stage("silver.sales_lines", sales_lines)
    line_result = p.publish(
        "silver.sales_lines",
        suites.silver_sales_lines,
        dates=dates,
        refs={**refs, "silver.sales": staged_sales},
    )
    p.finish("silver.sales_lines", line_result, versions)
    condition = (
        None if dates is None else f"invoice_date IS NULL OR {date_sql('invoice_date', dates)}"
    )
    p.stage(
        "silver.sales_quarantine",
        quarantine.unionByName(silver_erp.orphan_lines(lines, known_invoices)),
    )
    header_result.quarantined = p.write_quarantine("silver.sales_quarantine", condition)
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
    p.stage_batches(
        target,
        "bronze.events",
        dates,
        lambda part: silver_events.build(
            p.read_dates("bronze.events", _neighbours(part)),
            customers,
            products,
            sorted(part),
            lateness=dt.timedelta(hours=p.settings.silver_lateness_hours),
            future_tolerance=dt.timedelta(minutes=p.settings.silver_future_tolerance_minutes),
        ),
        also=("silver.events_quarantine",),
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
        suites.silver_events,
        dates=dates,
        refs={"silver.customers": customers, "silver.products": products},
        source_newest=newest,
    )
    if result.published:
        result.quarantined = p.write_quarantine(
            "silver.events_quarantine", date_sql("event_date", dates)
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
    p.stage(target, frame)
    return p.finish(target, p.publish(target, suite, refs=refs), versions)


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


def _gold_partitions(
    p: Pipeline,
    target: str,
    source: str,
    build: Callable[[set[dt.date]], DataFrame],
    suite: Callable[[suites.SuiteContext], suites.Suite],
    *,
    dates: Dates,
    full: bool,
    refs: tuple[str, ...] = (),
    newest: tuple[str, str] | None = None,
    widen: Callable[[set[dt.date]], set[dt.date]] = lambda d: d,
) -> StepResult:
    """A date-partitioned gold table: the partitions of `source` that changed (`widen`ed),
    built batch by batch with `build`, gated by `suite` against `refs`; freshness compares the
    batch with the newest value of `newest` (table, column) in those partitions."""
    dates, versions = _changed_dates(p, target, source, dates, full)
    if not dates:
        return p.skip(target, versions)
    dates = widen(dates)
    p.stage_batches(target, source, dates, build)
    result = p.publish(
        target,
        suite,
        dates=dates,
        refs=_gold_refs(p, *refs),
        source_newest=newest and _newest(p.read_dates(newest[0], dates), newest[1]),
    )
    return p.finish(target, result, versions)


def gold_fact_sales_line(p: Pipeline, *, dates: Dates = None, full: bool = False) -> StepResult:
    customers, products = p.read("silver.customers"), p.read("silver.products")
    return _gold_partitions(
        p,
        "gold.fact_sales_line",
        "silver.sales_lines",
        lambda part: gold.fact_sales_line(
            p.read_dates("silver.sales", part),
            p.read_dates("silver.sales_lines", part),
            customers,
            products,
        ),
        suites.fact_sales_line,
        dates=dates,
        full=full,
        refs=("gold.dim_customer", "gold.dim_product", "gold.dim_geography", "gold.dim_date"),
        newest=("silver.sales", "invoice_time"),
    )


def gold_fact_events(p: Pipeline, *, dates: Dates = None, full: bool = False) -> StepResult:
    return _gold_partitions(
        p,
        "gold.fact_events",
        "silver.events",
        lambda part: gold.fact_events(p.read_dates("silver.events", part)),
        suites.fact_events,
        dates=dates,
        full=full,
        refs=("gold.dim_customer", "gold.dim_product", "gold.dim_date"),
        newest=("silver.events", "event_time"),
    )


def gold_fact_sessions(p: Pipeline, *, dates: Dates = None, full: bool = False) -> StepResult:
    return _gold_partitions(
        p,
        "gold.fact_sessions",
        "silver.events",
        lambda part: gold.fact_sessions(
            p.read_dates("silver.events", _neighbours(part)), sorted(part)
        ),
        suites.fact_sessions,
        dates=dates,
        full=full,
        refs=("gold.dim_date",),
        # a session filed under day D may have events on D+1; one started on D-1 may change
        widen=lambda days: days | {d - dt.timedelta(days=1) for d in days},
    )


def gold_kpis(p: Pipeline, *, grain: str, dates: Dates = None, full: bool = False) -> StepResult:
    target = f"gold.kpi_{grain}ly" if grain == "hour" else f"gold.kpi_{grain}"
    return _gold_partitions(
        p,
        target,
        "silver.events",
        lambda part: gold.kpis(p.read_dates("silver.events", part), grain),
        suites.kpis(target.replace(".", "_")),
        dates=dates,
        full=full,
    )


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
    p.stage(target, frame)
    refs = _gold_refs(p, "gold.dim_customer", "gold.dim_product")
    return p.finish(
        target, p.publish(target, suites.customer_product_interactions, refs=refs), versions
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
