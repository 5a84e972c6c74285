"""The silver and gold steps, each declared once (`STEPS`): the tables it reads, the tables it
writes with their descriptions, partitioning and Great Expectations suites, its transformation
and its body. The runner (spark_jobs/pipeline.py) runs a step from its entry and lets it read
only what the entry declares; the Dagster assets of orchestration/defs/{silver,gold} are derived
from the same entries.

A step's body works out what changed upstream (spark_jobs/incremental.py), builds it with the
plain functions of silver_erp/silver_events/gold, and stages, validates and publishes it. Every
body takes `(pipeline, *, dates, full)`: `dates` backfills those partitions, `full` rebuilds from
the sources' whole history; whole-table steps rebuild whole and ignore `dates`.
"""

from __future__ import annotations

import datetime as dt
import graphlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from expectations import suites
from ml import RANKER_CANDIDATES, RANKER_FEATURES, RANKER_FEATURES_WINDOWS
from spark_jobs import gold, ml_inputs, silver_erp, silver_events
from spark_jobs.pipeline import (
    Dates,
    MissingInput,
    Output,
    Pipeline,
    Step,
    StepResult,
    Table,
    date_sql,
)
from streaming.records import EVENTS_SCHEMA

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from pyspark.sql import DataFrame


def _neighbours(dates: set[dt.date], days: int = 1) -> set[dt.date]:
    return {d + dt.timedelta(days=k) for d in dates for k in range(-days, days + 1)}


def _next_days(dates: set[dt.date]) -> set[dt.date]:
    return dates | {d + dt.timedelta(days=1) for d in dates}


def _newest(frame: DataFrame, column: str) -> dt.datetime | None:
    return frame.agg(F.max(column)).collect()[0][0]


def _changed(p: Pipeline, sources: tuple[str, ...], full: bool) -> tuple[bool, dict[str, int]]:
    """Whether any source changed since the step's output was last built (or it was never
    built), and the sources' current versions."""
    target = p.step.name
    found = [p.change(target, s, full=full) for s in sources]
    return any(c.changed for c in found) or not p.exists(target), {
        c.source: c.version for c in found
    }


# -- bodies ---------------------------------------------------------------------------------


def rebuilt_whole(p: Pipeline, *, dates: Dates = None, full: bool = False) -> list[StepResult]:
    """Small tables (reference dims, SCD2 masters, gold dims): rebuilt whole from every input,
    `transform(*inputs)`, when any input changed (SCD2 needs each key's whole history anyway)."""
    step = p.step
    changed, versions = _changed(p, step.inputs, full)
    if not changed:
        return [p.skip(step.name, versions)]
    p.stage(step.name, step.transform(*(p.read(t) for t in step.inputs)))
    return [p.finish(step.name, p.publish(step.name), versions)]


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
    newest = _newest(sales_dates, "InvoiceDate")
    p.stage(target, sales)
    header_result = p.publish(target, dates=dates, source_newest=newest)
    if not header_result.published:
        return [p.finish(target, header_result, versions)]
    staged_sales = p.spark.read.format("delta").load(p.staging_uri(target))
    p.stage("silver.sales_lines", sales_lines)
    # the lines are checked against the headers of this batch, not the published ones
    line_result = p.publish("silver.sales_lines", dates=dates, refs={target: staged_sales})
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


SHOWN = "silver.recommendation_events"


def silver_events_step(p: Pipeline, *, dates: Dates = None, full: bool = False) -> list[StepResult]:
    """silver.events + silver.events_quarantine for the event dates bronze gained rows in (and a
    day either side, whose sessions may change), or `dates` for a backfill."""
    target = "silver.events"
    if not p.exists("bronze.events"):
        return _no_clickstream_yet(p, target)
    # a lake from before contract 1.1 gets silver.recommendation_events from all of bronze once
    full = full or not p.exists(SHOWN)
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
            return [p.skip(t, versions) for t in (target, SHOWN)]
        dates = _neighbours(dates)
    if dates is None:
        dates = p.all_dates("bronze.events")
        if not dates:
            return [p.skip(t, versions) for t in (target, SHOWN)]
    customers, products = p.read("silver.customers"), p.read("silver.products")
    knobs = p.config
    p.stage_batches(
        target,
        "bronze.events",
        dates,
        lambda part: silver_events.build(
            p.read_dates("bronze.events", _neighbours(part)),
            customers,
            products,
            sorted(part),
            lateness=knobs.lateness,
            future_tolerance=knobs.future_tolerance,
        ),
        also=("silver.events_quarantine", SHOWN),
    )
    tolerance = knobs.future_tolerance.total_seconds()
    in_dates = p.read_dates("bronze.events", dates)
    newest = _newest(
        in_dates.where(
            F.col("event_time").cast("long") <= F.col("kafka_timestamp").cast("long") + tolerance
        ),
        "event_time",
    )
    result = p.publish(target, dates=dates, source_newest=newest)
    if not result.published:
        return [p.finish(target, result, versions)]
    shown = p.publish(SHOWN, dates=dates)
    result.quarantined = p.write_quarantine(
        "silver.events_quarantine", date_sql("event_date", dates)
    )
    return [p.finish(target, result, versions), p.finish(shown.table, shown, versions)]


def _no_clickstream_yet(p: Pipeline, target: str) -> list[StepResult]:
    """Without bronze.events (an ERP loaded before any clickstream), silver.events and its
    quarantine are published empty, once, so everything downstream builds on the sales alone;
    the step's result says so."""
    if p.exists(target) and p.exists(SHOWN):
        return [p.skip(t, {}) for t in (target, SHOWN)]
    customers, products = p.read("silver.customers"), p.read("silver.products")
    empty = p.spark.createDataFrame([], schema=from_arrow_schema(EVENTS_SCHEMA))
    knobs = p.config
    built = silver_events.build(
        empty, customers, products, [], lateness=knobs.lateness,
        future_tolerance=knobs.future_tolerance,
    )  # fmt: skip
    p.stage(target, built[0])
    p.stage("silver.events_quarantine", built[1])
    p.stage(SHOWN, built[2])
    result = p.publish(target, dates=set())
    shown = p.publish(SHOWN, dates=set())
    result.quarantined = p.write_quarantine("silver.events_quarantine", None)
    result.note = shown.note = "no clickstream yet (bronze.events does not exist): published empty"
    return [p.finish(target, result, {}), p.finish(shown.table, shown, {})]


def gold_dim_date(p: Pipeline, *, dates: Dates = None, full: bool = False) -> list[StepResult]:
    """One row per day of every year between the first and last partition of the inputs."""
    step = p.step
    changed, versions = _changed(p, step.inputs, full)
    if not changed:
        return [p.skip(step.name, versions)]
    spans = [s for s in map(p.partition_range, step.inputs) if s]
    today = p.now.date()
    first = min([s[0] for s in spans], default=today)
    last = max([s[1] for s in spans], default=today)
    p.stage(step.name, step.transform(p.spark, first, last))
    return [p.finish(step.name, p.publish(step.name), versions)]


def by_changed_dates(
    source: str,
    build: Callable[[Pipeline, set[dt.date]], DataFrame],
    *,
    newest: tuple[str, str] | None = None,
    widen: Callable[[set[dt.date]], set[dt.date]] = lambda d: d,
) -> Callable[..., list[StepResult]]:
    """The body of a date-partitioned gold table: the partitions of `source` that changed
    (`widen`ed), built batch by batch with `build`; freshness compares the batch with the
    newest value of `newest` (table, column) in those partitions."""

    def run(p: Pipeline, *, dates: Dates = None, full: bool = False) -> list[StepResult]:
        target = p.step.name
        found = p.change(target, source, full=full or dates is not None)
        versions = {source: found.version}
        if dates is None:
            dates = p.all_dates(source) if found.since is None else set(found.partitions or ())
        if not dates:
            if p.exists(target) and not full:
                return [p.skip(target, versions)]
            # the source is empty (a retailer without clickstream yet, no impressions yet): an
            # empty table, so the steps, marts and models that read it work on the rest; a full
            # rebuild republishes it so
            p.stage(target, build(p, set()))
            return [p.finish(target, p.publish(target, dates=set()), versions)]
        dates = widen(dates)
        p.stage_batches(target, source, dates, lambda part: build(p, part))
        newest_value = newest and _newest(p.read_dates(newest[0], dates), newest[1])
        result = p.publish(target, dates=dates, source_newest=newest_value)
        return [p.finish(target, result, versions)]

    run.__doc__ = f"Partitions of {source} that changed, rebuilt in batches."
    return run


def _fact_sales_line(p: Pipeline, part: set[dt.date]) -> DataFrame:
    return gold.fact_sales_line(
        p.read_dates("silver.sales", part),
        p.read_dates("silver.sales_lines", part),
        p.read("silver.customers"),
        p.read("silver.products"),
    )


def _kpis(grain: str) -> Callable[[Pipeline, set[dt.date]], DataFrame]:
    return lambda p, part: gold.kpis(p.read_dates("silver.events", part), grain)


def _newest_day(p: Pipeline) -> dt.date:
    """The newest partition of the step's partitioned inputs (a lake without events counts
    from its newest sale), or today when they are empty."""
    spans = [s for s in map(p.partition_range, p.step.inputs) if s]
    return max((s[1] for s in spans), default=p.now.date())


def gold_interactions(p: Pipeline, *, dates: Dates = None, full: bool = False) -> list[StepResult]:
    """Rebuilt whole when either fact changed: time decay moves every weight as time passes."""
    step = p.step
    changed, versions = _changed(p, step.inputs, full)
    if not changed:
        return [p.skip(step.name, versions)]
    events, sales_lines = (p.read(t) for t in step.inputs)
    frame = step.transform(events, sales_lines, _newest_day(p), p.config.interaction_half_life_days)
    p.stage(step.name, frame)
    return [p.finish(step.name, p.publish(step.name), versions)]


def rebuilt_as_of(p: Pipeline, *, dates: Dates = None, full: bool = False) -> list[StepResult]:
    """Whole tables that describe the data as of its newest day (trending, neighbours):
    `transform(*inputs, as_of)`, rebuilt when any input changed."""
    step = p.step
    changed, versions = _changed(p, step.inputs, full)
    if not changed:
        return [p.skip(step.name, versions)]
    p.stage(step.name, step.transform(*(p.read(t) for t in step.inputs), _newest_day(p)))
    return [p.finish(step.name, p.publish(step.name), versions)]


def ranker_features(p: Pipeline, *, dates: Dates = None, full: bool = False) -> list[StepResult]:
    """Rebuilt whole when an input or ML_TEST_DAYS changed: the snapshot days move with the
    newest day, and the days and their buyers with the windows."""
    step = p.step
    changed, versions = _changed(p, step.inputs, full)
    built_for = p.state.get(step.name, RANKER_FEATURES_WINDOWS)
    versions[RANKER_FEATURES_WINDOWS] = p.config.ml_test_days
    if not changed and built_for == p.config.ml_test_days:
        return [p.skip(step.name, versions)]
    daily, products = (p.read(t) for t in step.inputs)
    batches = step.transform(daily, products, p.config.ml_test_days)
    for number, batch in enumerate(batches):
        p.stage(step.name, batch, append=number > 0)
    return [p.finish(step.name, p.publish(step.name), versions)]


def ranker_candidates(p: Pipeline, *, dates: Dates = None, full: bool = False) -> list[StepResult]:
    """Rebuilt whole when an input or a setting it follows (ML_TEST_DAYS, the training
    samples) changed; computed in this process (`ml.ranker` generators are library models
    Spark cannot fit), staged a training cutoff at a time with delta-rs, gated by Spark."""
    import pyarrow as pa

    from spark_jobs.recommender_training import candidate_settings
    from spark_jobs.training import Tables

    step, config = p.step, p.config
    changed, versions = _changed(p, step.inputs, full)
    settings = candidate_settings(
        config.ml_test_days, config.ranker_training_customers, config.ranker_generator_customers
    )
    built_for = {name: p.state.get(step.name, name) for name in settings}
    versions |= settings
    if not changed and built_for == settings:
        return [p.skip(step.name, versions)]

    class DeclaredTables(Tables):  # the runner's reads, limited to what the step declares
        def require(self, table: str) -> DeltaTable:
            return p.delta(table)

    batches = step.transform(
        DeclaredTables(p.lake),
        config.ml_test_days,
        config.ranker_training_customers,
        config.ranker_generator_customers,
    )
    staged = False
    for frame in batches:
        p.stage_arrow(step.name, pa.Table.from_pandas(frame, preserve_index=False), append=staged)
        staged = True
    if not staged:
        raise MissingInput(
            f"{step.name}: no training cutoff has {config.ml_test_days}-day windows of history "
            "before it and purchases after it (ML_TEST_DAYS sets the windows)"
        )
    return [p.finish(step.name, p.publish(step.name), versions)]


def _candidates_suite(ctx: suites.SuiteContext) -> suites.Suite:
    from ml.ranker import GENERATORS, PER_GENERATOR

    return suites.customer_product_candidates(ctx, [f"{g}_rank" for g in GENERATORS], PER_GENERATOR)


def _ranker_candidates(*args: object) -> Iterator[object]:
    # imported when the step runs: the models' libraries take seconds to import
    from spark_jobs.recommender_training import ranker_candidates as transform

    return transform(*args)


def _basket_rules(sales_lines: DataFrame) -> DataFrame:
    return ml_inputs.basket_rules(sales_lines, ml_inputs.MIN_PAIR_SUPPORT)


# -- the registry ---------------------------------------------------------------------------


def _reference(table: str, description: str, key: str, not_null: list[str]) -> Output:
    name = table.replace(".", "_")
    return Output(table, description, suite=suites.reference(name, key, not_null))


STEPS: tuple[Step, ...] = (
    # silver: reference dims and SCD2 masters from the ERP's bronze tables
    Step(
        outputs=(
            _reference(
                "silver.geography",
                "Reference dim: area → city → region (current names).",
                "area_id",
                ["city_id", "city_name", "region"],
            ),
        ),
        inputs=("bronze.mv_setup_city", "bronze.mv_setup_area"),
        transform=silver_erp.geography,
        run=rebuilt_whole,
    ),
    Step(
        outputs=(
            _reference(
                "silver.product_hierarchy",
                "Reference dim: subcategory → category.",
                "subcategory_id",
                ["category_name"],
            ),
        ),
        inputs=("bronze.mv_category", "bronze.mv_sub_category"),
        transform=silver_erp.product_hierarchy,
        run=rebuilt_whole,
    ),
    Step(
        outputs=(
            _reference("silver.brands", "Reference dim: brands.", "brand_id", ["brand_name"]),
        ),
        inputs=("bronze.mv_brand",),
        transform=silver_erp.brands,
        run=rebuilt_whole,
    ),
    Step(
        outputs=(
            Output(
                "silver.customers",
                "Customers, SCD type 2 (valid_from, valid_to, is_current): a new version "
                "whenever city/area, loyalty tier, status or another tracked attribute changes.",
                suite=suites.silver_customers,
            ),
        ),
        inputs=("bronze.mv_setup_customer",),
        references=("silver.geography",),
        transform=silver_erp.customers,
        run=rebuilt_whole,
    ),
    Step(
        outputs=(
            Output(
                "silver.products",
                "Products, SCD type 2 on price, cost, brand, subcategory and status.",
                suite=suites.silver_products,
            ),
        ),
        inputs=("bronze.mv_setup_product",),
        references=("silver.product_hierarchy", "silver.brands"),
        transform=silver_erp.products,
        run=rebuilt_whole,
    ),
    # silver: date-partitioned facts
    Step(
        outputs=(
            Output(
                "silver.sales",
                "Invoice headers, one per invoice (latest ERP version), partitioned by "
                "invoice_date; cancellations and returns flagged; amounts reconciled with the "
                "lines.",
                partition_column="invoice_date",
                suite=suites.silver_sales,
            ),
            Output(
                "silver.sales_lines",
                "Invoice lines of the invoices in silver.sales.",
                partition_column="invoice_date",
                suite=suites.silver_sales_lines,
            ),
        ),
        quarantine=Table(
            "silver.sales_quarantine",
            "Invoices (with all their lines) and orphan lines that failed a rule: unreconciled "
            "amounts, negative quantity on a sale, unknown customer/product/invoice.",
        ),
        inputs=("bronze.mv_sales", "bronze.mv_sales_detail", "silver.customers", "silver.products"),
        transform=silver_erp.sales,
        run=silver_sales,
    ),
    Step(
        outputs=(
            Output(
                "silver.events",
                "Clean clickstream: deduplicated by event_id, in their true event_date "
                "partition, sessionised (session start/end, sequence), keyed to the customer and "
                "product versions valid at event time.",
                partition_column="event_date",
                suite=suites.silver_events,
            ),
            Output(
                "silver.recommendation_events",
                "What the recommendation API showed (impressions: the request, experiment, "
                "variant, model and the products in order) and what of it was clicked (the "
                "request, product and position); checked by the same rules as silver.events.",
                partition_column="event_date",
                suite=suites.silver_recommendation_events,
            ),
        ),
        quarantine=Table(
            "silver.events_quarantine",
            "Events kept out of silver, with the reason: duplicate, from the future, later than "
            "the lateness window, unknown customer or product.",
            partition_column="event_date",
        ),
        inputs=("bronze.events", "silver.customers", "silver.products"),
        transform=silver_events.build,
        run=silver_events_step,
    ),
    # gold: the star schema
    Step(
        outputs=(
            _reference(
                "gold.dim_date",
                "Calendar: one row per day of every year with data (date_key yyyymmdd).",
                "date_key",
                ["date", "year_month"],
            ),
        ),
        inputs=("silver.events", "silver.sales"),
        transform=gold.dim_date,
        run=gold_dim_date,
    ),
    Step(
        outputs=(
            _reference(
                "gold.dim_geography", "Area → city → region.", "area_id", ["city_name", "region"]
            ),
        ),
        inputs=("silver.geography",),
        transform=gold.dim_geography,
        run=rebuilt_whole,
    ),
    Step(
        outputs=(
            Output(
                "gold.dim_customer",
                "Customers, SCD2, with the city/area/region of each version.",
                suite=suites.silver_customers,
            ),
        ),
        inputs=("silver.customers", "silver.geography"),
        transform=gold.dim_customer,
        run=rebuilt_whole,
    ),
    Step(
        outputs=(
            Output(
                "gold.dim_product",
                "Products, SCD2, with brand, category and subcategory of each version.",
                suite=suites.silver_products,
            ),
        ),
        inputs=("silver.products", "silver.product_hierarchy", "silver.brands"),
        transform=gold.dim_product,
        run=rebuilt_whole,
    ),
    Step(
        outputs=(
            Output(
                "gold.fact_sales_line",
                "Grain: invoice line. Keys of the customer/product versions valid at invoice "
                "time; gross, discounts, order coupon share, net, cost and margin.",
                partition_column="invoice_date",
                suite=suites.fact_sales_line,
            ),
        ),
        inputs=("silver.sales", "silver.sales_lines", "silver.customers", "silver.products"),
        references=("gold.dim_customer", "gold.dim_product", "gold.dim_geography", "gold.dim_date"),
        transform=gold.fact_sales_line,
        run=by_changed_dates(
            "silver.sales_lines", _fact_sales_line, newest=("silver.sales", "invoice_time")
        ),
    ),
    Step(
        outputs=(
            Output(
                "gold.fact_events",
                "Grain: clean clickstream event, keyed to dims.",
                partition_column="event_date",
                suite=suites.fact_events,
            ),
        ),
        inputs=("silver.events",),
        references=("gold.dim_customer", "gold.dim_product", "gold.dim_date"),
        transform=gold.fact_events,
        run=by_changed_dates(
            "silver.events",
            lambda p, part: gold.fact_events(p.read_dates("silver.events", part)),
            newest=("silver.events", "event_time"),
        ),
    ),
    Step(
        outputs=(
            Output(
                "gold.fact_sessions",
                "Grain: session (filed under its start date): duration, funnel counts, orders, "
                "revenue, converted.",
                partition_column="session_date",
                suite=suites.fact_sessions,
            ),
        ),
        inputs=("silver.events",),
        references=("gold.dim_date",),
        transform=gold.fact_sessions,
        run=by_changed_dates(
            "silver.events",
            lambda p, part: gold.fact_sessions(
                p.read_dates("silver.events", _neighbours(part)), sorted(part)
            ),
            # a session filed under day D may have events on D+1; one started on D-1 may change
            widen=lambda days: days | {d - dt.timedelta(days=1) for d in days},
        ),
    ),
    Step(
        outputs=(
            Output(
                "gold.recommendation_exposures",
                "Grain: a product one recommendation request showed (filed under the "
                "impression's date): experiment, variant, model, position, clicked, and the cart "
                "and purchase of it credited to the impression (same session, within a day, "
                "last touch).",
                partition_column="event_date",
                suite=suites.recommendation_exposures,
            ),
        ),
        inputs=(SHOWN, "silver.events"),
        references=("gold.dim_date",),
        transform=gold.recommendation_exposures,
        run=by_changed_dates(
            SHOWN,
            lambda p, part: gold.recommendation_exposures(
                p.read_dates(SHOWN, _next_days(part)),
                p.read_dates("silver.events", _next_days(part)),
                sorted(part),
            ),
            # an impression of day D is credited with clicks and purchases of D and D+1
            widen=lambda days: days | {d - dt.timedelta(days=1) for d in days},
        ),
    ),
    Step(
        outputs=(
            Output(
                "gold.kpi_minute",
                "Events, sessions, funnel, orders, revenue and conversion per minute.",
                partition_column="event_date",
                suite=suites.kpis("gold_kpi_minute"),
            ),
        ),
        inputs=("silver.events",),
        transform=gold.kpis,
        run=by_changed_dates("silver.events", _kpis("minute")),
    ),
    Step(
        outputs=(
            Output(
                "gold.kpi_hourly",
                "The same per hour.",
                partition_column="event_date",
                suite=suites.kpis("gold_kpi_hourly"),
            ),
        ),
        inputs=("silver.events",),
        transform=gold.kpis,
        run=by_changed_dates("silver.events", _kpis("hour")),
    ),
    Step(
        outputs=(
            Output(
                "gold.customer_product_interactions",
                "Implicit feedback per customer × product: views, carts and purchases, "
                "time-decayed (half-life INTERACTION_HALF_LIFE_DAYS): the recommenders' input.",
                suite=suites.customer_product_interactions,
            ),
        ),
        inputs=("gold.fact_events", "gold.fact_sales_line"),
        references=("gold.dim_customer", "gold.dim_product"),
        transform=gold.customer_product_interactions,
        run=gold_interactions,
    ),
    # the recommenders' Spark side (Dagster group `ml`, built by `lakehouse ml train`)
    Step(
        outputs=(
            Output(
                "gold.customer_product_daily",
                "Implicit feedback per customer × product × day, undecayed (views, carts, "
                "purchases, INTERACTION_WEIGHTS sum, last signal): the recommenders' training "
                "data, cut by date into fit and evaluation windows.",
                suite=suites.customer_product_daily,
            ),
        ),
        inputs=("gold.fact_events", "gold.fact_sales_line"),
        references=("gold.dim_customer", "gold.dim_product"),
        transform=ml_inputs.daily_interactions,
        run=rebuilt_whole,
        group_name="ml",
    ),
    Step(
        outputs=(
            Output(
                "gold.customer_product_features",
                "What the learned ranker knows at the end of each day the recommenders "
                "snapshot (`as_of`: each fit's day and its training cutoffs) of every customer "
                "× product they took (purchase days, first and last purchase, last view and "
                "cart as day numbers, recency-decayed browsing and interaction weight, own "
                "repurchase interval) and of the customer (recency, purchase days, tenure, "
                "products bought, price level): computed by the ranker's own function, the "
                "statistics its fits read.",
                suite=suites.customer_product_features,
            ),
        ),
        inputs=("gold.customer_product_daily", "gold.dim_product"),
        references=("gold.dim_customer",),
        transform=ml_inputs.customer_product_features,
        run=ranker_features,
        group_name="ml",
    ),
    Step(
        outputs=(
            Output(
                RANKER_CANDIDATES,
                "What the learned ranker learns from at each training cutoff of the "
                "recommenders' chain (`as_of`): the candidates every generator proposes to the "
                "cutoff's sampled buyers, with each generator's score and rank (NaN where it "
                "did not propose the product). Fitted in Python from the daily rows up to the "
                "cutoff and the cutoff's statistics in gold.customer_product_features.",
                suite=_candidates_suite,
            ),
        ),
        inputs=(
            "gold.customer_product_daily",
            "gold.dim_product",
            "gold.dim_customer",
            RANKER_FEATURES,
        ),
        transform=_ranker_candidates,
        run=ranker_candidates,
        group_name="ml",
        kinds=frozenset({"python", "implicit", "sklearn", "delta"}),
    ),
    Step(
        outputs=(
            Output(
                "gold.similar_products",
                "Top-20 neighbours per product and method: co-occurrence CF (cosine, Jaccard) "
                "over gold.customer_product_interactions, and content (TF-IDF of name, brand, "
                "category and price band) over the whole current catalogue.",
                suite=suites.similar_products,
            ),
        ),
        inputs=("gold.customer_product_interactions", "gold.dim_product"),
        transform=ml_inputs.similar_products,
        run=rebuilt_as_of,
        group_name="ml",
    ),
    Step(
        outputs=(
            Output(
                "gold.product_associations",
                "Association rules of products bought in one invoice (pairs and triples): "
                "support, confidence, lift; rank = frequently bought together per antecedent.",
                suite=suites.product_associations,
            ),
        ),
        inputs=("gold.fact_sales_line",),
        references=("gold.dim_product",),
        transform=_basket_rules,
        run=rebuilt_whole,
        group_name="ml",
    ),
    Step(
        outputs=(
            Output(
                "gold.trending_products",
                "Trending score, velocity and seasonal boost per product, nationally and per "
                "city and area, as of the newest day of the facts.",
                suite=suites.trending_products,
            ),
        ),
        inputs=("gold.fact_events", "gold.fact_sales_line", "gold.dim_customer"),
        references=("gold.dim_product",),
        transform=ml_inputs.trending_products,
        run=rebuilt_as_of,
        group_name="ml",
    ),
)


def in_dependency_order(steps: tuple[Step, ...] = STEPS) -> list[Step]:
    """The steps sorted so that every step comes after the steps writing what it reads."""
    writer = {t.name: s.name for s in steps for t in s.tables}
    graph = {
        s.name: {writer[t] for t in s.inputs + s.references if t in writer and writer[t] != s.name}
        for s in steps
    }
    by_name = {s.name: s for s in steps}
    return [by_name[name] for name in graphlib.TopologicalSorter(graph).static_order()]


def step(name: str) -> Step:
    """The step whose first output is `name` (e.g. silver.events)."""
    for entry in STEPS:
        if entry.name == name:
            return entry
    raise KeyError(f"unknown step {name!r}; expected one of {', '.join(s.name for s in STEPS)}")
