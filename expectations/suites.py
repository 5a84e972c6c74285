"""The Great Expectations suites of the silver and gold tables, one function per table.

Each suite sees the staged batch (the partitions being replaced, or the whole table for dims).
Rules that GX cannot state on one column (referential integrity, "quantity is negative only on
returns") are computed as boolean columns first (`derived`, `references`) and then expected true,
so every rule is a GX expectation with its own result row.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

EVENT_TYPES = ["page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "purchase"]
RECOMMENDATION_EVENT_TYPES = ["recommendation_impression", "recommendation_click"]
DEVICES = ["mobile_app_android", "mobile_app_ios", "mobile_web", "desktop_web"]
CHANNELS = ["Web", "App", "Store"]
PAYMENT_TYPES = ["Card", "Cash on Delivery", "Wallet", "Cash"]
INVOICE_TYPES = ["Sale", "Return"]
INVOICE_STATUSES = ["Completed", "Cancelled"]
CUSTOMER_STATUSES = ["Active", "Closed"]
LOYALTY_TIERS = ["Regular", "Silver", "Gold", "Platinum"]
CUSTOMER_TYPES = ["Individual", "Corporate", "Reseller"]
EARLIEST = dt.datetime(2000, 1, 1)


@dataclass(frozen=True)
class Thresholds:
    """The bounds of the distribution checks (QUALITY_* settings). These checks warn: a batch
    outside them is published and flagged; integrity checks (keys, references, accepted
    values, signs) block it."""

    # a replaced partition may shrink (duplicates found later) but never lose half its rows
    min_kept_share: float = 0.5
    # dimensions only grow; a rebuild keeping fewer than this share of rows has lost history
    min_dim_share: float = 0.9
    max_money: float = 10_000_000  # PKR; far above any single line or order
    # a sale's unit price within this band around the list price of the product version sold
    price_to_list_min: float = 0.5
    price_to_list_max: float = 2.0
    max_quantity: int = 1_000


@dataclass
class Reference:
    """`column` values must exist in `target`.`target_column` (nulls are not checked)."""

    column: str
    target: DataFrame
    target_column: str
    target_name: str

    @property
    def flag(self) -> str:
        return f"{self.column}_in_{self.target_name.replace('.', '_')}"


@dataclass
class Suite:
    name: str
    expectations: list[Any]
    derived: dict[str, Callable[[], Column]] = field(default_factory=dict)
    references: list[Reference] = field(default_factory=list)

    def prepare(self, frame: DataFrame) -> DataFrame:
        """The frame GX validates: the batch plus the derived and reference flag columns."""
        from pyspark.sql import functions as F

        for name, make in self.derived.items():
            frame = frame.withColumn(name, make())
        for ref in self.references:
            keys = ref.target.select(F.col(ref.target_column).alias("_ref_key")).distinct()
            keys = keys.withColumn("_ref_found", F.lit(True))
            frame = (
                frame.join(keys, F.col(ref.column) == F.col("_ref_key"), "left")
                .withColumn(ref.flag, F.coalesce("_ref_found", F.col(ref.column).isNull()))
                .drop("_ref_key", "_ref_found")
            )
        return frame


@dataclass
class SuiteContext:
    """What a suite needs beyond the batch: the clock, the rows it replaces, the source's newest
    time (freshness) and the tables it references."""

    now: dt.datetime
    rows_before: int = 0
    source_newest: dt.datetime | None = None
    refs: Mapping[str, DataFrame] = field(default_factory=dict)
    thresholds: Thresholds = field(default_factory=Thresholds)


def _gx():
    from lakehouse.core.spark import allow_spark_connect_import

    allow_spark_connect_import()
    import great_expectations as gx

    return gx.expectations


def warn(expectation: Any) -> Any:
    """A distribution check: its failure warns (the batch is published) instead of blocking."""
    from great_expectations.expectations.metadata_types import FailureSeverity

    expectation.severity = FailureSeverity.WARNING
    return expectation


def _between(column: str, ctx: SuiteContext, **bounds: Any) -> Any:
    return warn(_gx().ExpectColumnValuesToBeBetween(column=column, **bounds))


def _money(column: str, ctx: SuiteContext, signed: bool = False) -> Any:
    top = ctx.thresholds.max_money
    return _between(column, ctx, min_value=-top if signed else 0, max_value=top)


def _true(column: str):
    return _gx().ExpectColumnValuesToBeInSet(column=column, value_set=[True])


def _key(*columns: str) -> list[Any]:
    e = _gx()
    out = [e.ExpectColumnValuesToNotBeNull(column=c) for c in columns]
    if len(columns) == 1:
        out.append(e.ExpectColumnValuesToBeUnique(column=columns[0]))
    else:
        out.append(e.ExpectCompoundColumnsToBeUnique(column_list=list(columns)))
    return out


def _row_count(ctx: SuiteContext, share: float) -> Any:
    """Row-count change within bounds: the batch keeps at least `share` of the rows it replaces."""
    return warn(_gx().ExpectTableRowCountToBeBetween(min_value=math.floor(ctx.rows_before * share)))


def _not_future(column: str, ctx: SuiteContext) -> Any:
    return _gx().ExpectColumnValuesToBeBetween(
        column=column, min_value=EARLIEST, max_value=ctx.now + dt.timedelta(minutes=5)
    )


def _fresh(column: str, ctx: SuiteContext, allowance: dt.timedelta) -> list[Any]:
    """Freshness: the batch's newest row is within `allowance` of its source's newest row."""
    if ctx.source_newest is None:
        return []
    return [
        warn(
            _gx().ExpectColumnMaxToBeBetween(column=column, min_value=ctx.source_newest - allowance)
        )
    ]


def _refs(ctx: SuiteContext, *pairs: tuple[str, str, str]) -> list[Reference]:
    return [Reference(col, ctx.refs[name], target_col, name) for col, name, target_col in pairs]


def _with_refs(suite: Suite) -> Suite:
    suite.expectations += [_true(r.flag) for r in suite.references]
    return suite


def _keyed() -> Column:
    """Every customer/product id of an event resolved to the SCD2 version valid at its time."""
    from pyspark.sql import functions as F

    return (F.col("customer_id").isNull() | F.col("customer_sk").isNotNull()) & (
        F.col("product_id").isNull() | F.col("product_sk").isNotNull()
    )


def _version_refs(ctx: SuiteContext) -> list[Reference]:
    return _refs(
        ctx,
        ("customer_sk", "silver.customers", "customer_sk"),
        ("product_sk", "silver.products", "product_sk"),
    )


def silver_recommendation_events(ctx: SuiteContext) -> Suite:
    from pyspark.sql import functions as F

    e = _gx()
    impression = F.col("event_type") == "recommendation_impression"
    return _with_refs(
        Suite(
            "silver_recommendation_events",
            [
                *_key("event_id"),
                e.ExpectColumnValuesToNotBeNull(column="session_id"),
                e.ExpectColumnValuesToNotBeNull(column="request_id"),
                e.ExpectColumnValuesToBeInSet(
                    column="event_type", value_set=RECOMMENDATION_EVENT_TYPES
                ),
                e.ExpectColumnValuesToBeBetween(column="position", min_value=1, max_value=100),
                _not_future("event_time", ctx),
                _true("shaped"),
                _true("keyed"),
            ],
            derived={
                # an impression lists what was shown; a click names one product and its place
                "shaped": lambda: F.when(
                    impression,
                    F.col("recommended_product_ids").isNotNull() & F.col("position").isNull(),
                ).otherwise(F.col("product_id").isNotNull() & F.col("position").isNotNull()),
                "keyed": _keyed,
            },
            references=_version_refs(ctx),
        )
    )


def silver_events(ctx: SuiteContext) -> Suite:
    from pyspark.sql import functions as F

    e = _gx()
    return _with_refs(
        Suite(
            "silver_events",
            [
                *_key("event_id"),
                e.ExpectColumnValuesToNotBeNull(column="session_id"),
                e.ExpectColumnValuesToBeInSet(column="event_type", value_set=EVENT_TYPES),
                e.ExpectColumnValuesToBeInSet(column="device", value_set=DEVICES),
                e.ExpectColumnValuesToBeBetween(column="quantity", min_value=1),
                _between("quantity", ctx, max_value=ctx.thresholds.max_quantity),
                e.ExpectColumnValuesToBeBetween(column="price", min_value=0),
                _money("price", ctx),
                e.ExpectColumnValuesToBeBetween(column="event_seq", min_value=1),
                _not_future("event_time", ctx),
                _true("within_session"),
                _true("keyed"),
                _row_count(ctx, ctx.thresholds.min_kept_share),
                *_fresh("event_time", ctx, dt.timedelta(days=1)),
            ],
            derived={
                "within_session": lambda: F.col("event_time").between(
                    F.col("session_start"), F.col("session_end")
                ),
                "keyed": _keyed,
            },
            references=_version_refs(ctx),
        )
    )


def silver_sales(ctx: SuiteContext) -> Suite:
    from pyspark.sql import functions as F

    e = _gx()
    return _with_refs(
        Suite(
            "silver_sales",
            [
                *_key("invoice_id"),
                e.ExpectColumnValuesToBeInSet(column="channel", value_set=CHANNELS),
                e.ExpectColumnValuesToBeInSet(column="payment_type", value_set=PAYMENT_TYPES),
                e.ExpectColumnValuesToBeInSet(column="invoice_type", value_set=INVOICE_TYPES),
                e.ExpectColumnValuesToBeInSet(column="status", value_set=INVOICE_STATUSES),
                _money("net_amount", ctx, signed=True),
                e.ExpectColumnValuesToBeBetween(column="line_count", min_value=1),
                _not_future("invoice_time", ctx),
                _true("sign_matches_type"),
                _true("return_has_original"),
                _row_count(ctx, ctx.thresholds.min_kept_share),
                *_fresh("invoice_time", ctx, dt.timedelta(days=1)),
            ],
            derived={
                "sign_matches_type": lambda: F.when(
                    F.col("is_return"), F.col("gross_amount") <= 0
                ).otherwise(F.col("gross_amount") >= 0),
                "return_has_original": lambda: (
                    ~F.col("is_return") | F.col("original_invoice_id").isNotNull()
                ),
            },
            references=_refs(ctx, ("customer_id", "silver.customers", "customer_id")),
        )
    )


def silver_sales_lines(ctx: SuiteContext) -> Suite:
    from pyspark.sql import functions as F

    e = _gx()
    return _with_refs(
        Suite(
            "silver_sales_lines",
            [
                *_key("invoice_id", "line_no"),
                e.ExpectColumnValuesToBeBetween(column="unit_price", min_value=0),
                _money("unit_price", ctx),
                e.ExpectColumnValuesToNotBeNull(column="quantity"),
                _true("quantity_sign_matches_type"),
                _row_count(ctx, ctx.thresholds.min_kept_share),
            ],
            derived={
                # no negative quantities outside returns, no positive ones on them
                "quantity_sign_matches_type": lambda: F.when(
                    F.col("is_return"), F.col("quantity") < 0
                ).otherwise(F.col("quantity") > 0)
            },
            references=_refs(
                ctx,
                ("invoice_id", "silver.sales", "invoice_id"),
                ("product_id", "silver.products", "product_id"),
            ),
        )
    )


def _scd2(name: str, sk: str, key: str, ctx: SuiteContext, extra: list[Any], **kw) -> Suite:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    e = _gx()
    return _with_refs(
        Suite(
            name,
            [
                *_key(sk),
                *_key(key, "valid_from"),
                e.ExpectColumnValuesToBeBetween(column="version", min_value=1),
                _true("valid_from_before_valid_to"),
                _true("one_current_version"),
                _row_count(ctx, ctx.thresholds.min_dim_share),
                *extra,
            ],
            derived={
                "valid_from_before_valid_to": lambda: F.col("valid_from") < F.col("valid_to"),
                "one_current_version": lambda: (
                    F.sum(F.col("is_current").cast("int")).over(Window.partitionBy(key)) == 1
                ),
            },
            **kw,
        )
    )


def silver_customers(ctx: SuiteContext) -> Suite:
    e = _gx()
    return _scd2(
        "silver_customers",
        "customer_sk",
        "customer_id",
        ctx,
        [
            e.ExpectColumnValuesToBeInSet(column="gender", value_set=["M", "F"]),
            e.ExpectColumnValuesToBeInSet(column="status", value_set=CUSTOMER_STATUSES),
            e.ExpectColumnValuesToBeInSet(column="loyalty_tier", value_set=LOYALTY_TIERS),
            e.ExpectColumnValuesToBeInSet(column="customer_type", value_set=CUSTOMER_TYPES),
        ],
        references=_refs(ctx, ("area_id", "silver.geography", "area_id")),
    )


def silver_products(ctx: SuiteContext) -> Suite:
    e = _gx()
    return _scd2(
        "silver_products",
        "product_sk",
        "product_id",
        ctx,
        [
            e.ExpectColumnValuesToBeBetween(column="list_price", min_value=0),
            e.ExpectColumnValuesToBeBetween(column="unit_cost", min_value=0),
            _money("list_price", ctx),
            _money("unit_cost", ctx),
        ],
        references=_refs(
            ctx,
            ("subcategory_id", "silver.product_hierarchy", "subcategory_id"),
            ("brand_id", "silver.brands", "brand_id"),
        ),
    )


def reference(name: str, key: str, not_null: list[str]) -> Callable[[SuiteContext], Suite]:
    """Suites of the small reference tables: a key and the names that must be there."""

    def suite(ctx: SuiteContext) -> Suite:
        e = _gx()
        return Suite(
            name,
            [
                *_key(key),
                *[e.ExpectColumnValuesToNotBeNull(column=c) for c in not_null],
                _row_count(ctx, ctx.thresholds.min_dim_share),
            ],
        )

    return suite


def fact_sales_line(ctx: SuiteContext) -> Suite:
    from pyspark.sql import functions as F

    e = _gx()
    return _with_refs(
        Suite(
            "gold_fact_sales_line",
            [
                *_key("invoice_id", "line_no"),
                e.ExpectColumnValuesToNotBeNull(column="customer_sk"),
                e.ExpectColumnValuesToNotBeNull(column="product_sk"),
                _true("quantity_sign_matches_type"),
                # prices within a band around the list price of the product version sold
                _between(
                    "price_to_list",
                    ctx,
                    min_value=ctx.thresholds.price_to_list_min,
                    max_value=ctx.thresholds.price_to_list_max,
                    mostly=0.999,
                ),
                _not_future("invoice_time", ctx),
                _row_count(ctx, ctx.thresholds.min_kept_share),
                *_fresh("invoice_time", ctx, dt.timedelta(0)),
            ],
            derived={
                "quantity_sign_matches_type": lambda: F.when(
                    F.col("is_return"), F.col("quantity") < 0
                ).otherwise(F.col("quantity") > 0),
                "price_to_list": lambda: F.col("unit_price") / F.col("list_price_at_sale"),
            },
            references=_refs(
                ctx,
                ("customer_sk", "gold.dim_customer", "customer_sk"),
                ("product_sk", "gold.dim_product", "product_sk"),
                ("area_id", "gold.dim_geography", "area_id"),
                ("date_key", "gold.dim_date", "date_key"),
            ),
        )
    )


def fact_events(ctx: SuiteContext) -> Suite:
    e = _gx()
    return _with_refs(
        Suite(
            "gold_fact_events",
            [
                *_key("event_id"),
                e.ExpectColumnValuesToBeInSet(column="event_type", value_set=EVENT_TYPES),
                _not_future("event_time", ctx),
                _row_count(ctx, ctx.thresholds.min_kept_share),
                *_fresh("event_time", ctx, dt.timedelta(0)),
            ],
            references=_refs(
                ctx,
                ("customer_sk", "gold.dim_customer", "customer_sk"),
                ("product_sk", "gold.dim_product", "product_sk"),
                ("date_key", "gold.dim_date", "date_key"),
            ),
        )
    )


def fact_sessions(ctx: SuiteContext) -> Suite:
    from pyspark.sql import functions as F

    e = _gx()
    return _with_refs(
        Suite(
            "gold_fact_sessions",
            [
                *_key("session_id"),
                e.ExpectColumnValuesToBeBetween(column="duration_seconds", min_value=0),
                _between("duration_seconds", ctx, max_value=86_400),
                e.ExpectColumnValuesToBeBetween(column="events", min_value=1),
                _true("converted_has_revenue"),
                _row_count(ctx, ctx.thresholds.min_kept_share),
            ],
            derived={"converted_has_revenue": lambda: ~F.col("converted") | (F.col("revenue") > 0)},
            references=_refs(ctx, ("date_key", "gold.dim_date", "date_key")),
        )
    )


def recommendation_exposures(ctx: SuiteContext) -> Suite:
    from pyspark.sql import functions as F

    e = _gx()
    return _with_refs(
        Suite(
            "gold_recommendation_exposures",
            [
                *_key("request_id", "product_id"),
                e.ExpectColumnValuesToBeBetween(column="position", min_value=1, max_value=100),
                e.ExpectColumnValuesToBeBetween(column="revenue", min_value=0),
                _money("revenue", ctx),
                _true("revenue_only_with_purchase"),
                _row_count(ctx, ctx.thresholds.min_kept_share),
            ],
            derived={
                "revenue_only_with_purchase": lambda: F.col("purchased") | (F.col("revenue") == 0)
            },
            references=_refs(ctx, ("date_key", "gold.dim_date", "date_key")),
        )
    )


def kpis(name: str) -> Callable[[SuiteContext], Suite]:
    def suite(ctx: SuiteContext) -> Suite:
        e = _gx()
        return Suite(
            name,
            [
                *_key("period_start"),
                e.ExpectColumnValuesToBeBetween(column="events", min_value=1),
                e.ExpectColumnValuesToBeBetween(column="revenue", min_value=0),
                e.ExpectColumnValuesToBeBetween(column="conversion_rate", min_value=0, max_value=1),
                _row_count(ctx, ctx.thresholds.min_kept_share),
            ],
        )

    return suite


def customer_product_interactions(ctx: SuiteContext) -> Suite:
    e = _gx()
    return _with_refs(
        Suite(
            "gold_customer_product_interactions",
            [
                *_key("customer_id", "product_id"),
                e.ExpectColumnValuesToBeBetween(column="weight", min_value=0),
                # every pair has a signal: all-zero weights mean a wrong as-of day or decay
                e.ExpectColumnMaxToBeBetween(column="weight", min_value=0, strict_min=True),
                e.ExpectColumnValuesToBeBetween(column="views", min_value=0),
                _row_count(ctx, ctx.thresholds.min_kept_share),
            ],
            references=_refs(
                ctx,
                ("customer_id", "gold.dim_customer", "customer_id"),
                ("product_id", "gold.dim_product", "product_id"),
            ),
        )
    )


# -- the recommenders' tables (Dagster group `ml`) --------------------------------------------

SIMILARITY_METHODS = ["cf_cosine", "cf_jaccard", "content"]
TRENDING_SCOPES = ["global", "city", "area"]


def _products(ctx: SuiteContext, *columns: str) -> list[Reference]:
    return _refs(ctx, *((c, "gold.dim_product", "product_id") for c in columns))


def customer_product_daily(ctx: SuiteContext) -> Suite:
    e = _gx()
    return _with_refs(
        Suite(
            "gold_customer_product_daily",
            [
                *_key("customer_id", "product_id", "interaction_date"),
                *(
                    e.ExpectColumnValuesToBeBetween(column=c, min_value=0)
                    for c in ("views", "adds_to_cart", "purchases", "weight")
                ),
                # every row is a day with a signal: all-zero weights mean broken weighting
                e.ExpectColumnMaxToBeBetween(column="weight", min_value=0, strict_min=True),
                _not_future("at", ctx),
                _row_count(ctx, ctx.thresholds.min_kept_share),
            ],
            references=[
                *_refs(ctx, ("customer_id", "gold.dim_customer", "customer_id")),
                *_products(ctx, "product_id"),
            ],
        )
    )


def customer_product_features(ctx: SuiteContext) -> Suite:
    from pyspark.sql import functions as F

    e = _gx()
    days = ("first_purchase", "last_purchase", "last_view", "last_cart")
    return _with_refs(
        Suite(
            "gold_customer_product_features",
            [
                *_key("as_of", "customer_id", "product_id"),
                e.ExpectColumnValuesToNotBeNull(column="customer_tenure"),
                e.ExpectColumnValuesToBeBetween(column="pair_weight", min_value=0),
                # every pair has a signal: all-zero weights mean a wrong as-of day or decay
                e.ExpectColumnMaxToBeBetween(column="pair_weight", min_value=0, strict_min=True),
                e.ExpectColumnValuesToBeBetween(column="purchase_days", min_value=1),
                e.ExpectColumnValuesToBeBetween(column="customer_tenure", min_value=0),
                _true("nothing_after_as_of"),
                _row_count(ctx, ctx.thresholds.min_kept_share),
            ],
            derived={
                # day columns are day numbers: none may be after the snapshot's day
                "nothing_after_as_of": lambda: (
                    F.coalesce(F.greatest(*days), F.lit(0))
                    <= F.datediff(F.col("as_of"), F.lit("1970-01-01"))
                ),
            },
            references=[
                *_refs(ctx, ("customer_id", "gold.dim_customer", "customer_id")),
                *_products(ctx, "product_id"),
            ],
        )
    )


def customer_product_candidates(
    ctx: SuiteContext, rank_columns: Sequence[str], list_length: int
) -> Suite:
    """The ranker's candidates: `rank_columns` are the generators' (each list `list_length`
    long)."""
    from pyspark.sql import functions as F

    ranks = [F.col(c) for c in rank_columns]
    return _with_refs(
        Suite(
            "gold_customer_product_candidates",
            [
                *_key("as_of", "customer_id", "product_id"),
                _true("proposed"),
                _true("ranks_within_lists"),
                _row_count(ctx, ctx.thresholds.min_kept_share),
            ],
            derived={
                # every row is some generator's candidate, within its list
                "proposed": lambda: F.coalesce(*ranks).isNotNull(),
                # (greatest and least skip a generator's null: it did not propose the product)
                "ranks_within_lists": lambda: (
                    (F.least(*ranks) >= 1) & (F.greatest(*ranks) <= list_length)
                ),
            },
            references=[
                *_refs(ctx, ("customer_id", "gold.dim_customer", "customer_id")),
                *_products(ctx, "product_id"),
            ],
        )
    )


def similar_products(ctx: SuiteContext) -> Suite:
    from pyspark.sql import functions as F

    e = _gx()
    return _with_refs(
        Suite(
            "gold_similar_products",
            [
                *_key("method", "product_id", "rank"),
                e.ExpectColumnValuesToNotBeNull(column="similar_product_id"),
                e.ExpectColumnValuesToBeInSet(column="method", value_set=SIMILARITY_METHODS),
                e.ExpectColumnValuesToBeBetween(column="rank", min_value=1),
                _true("not_itself"),
                # cosine and Jaccard are at most 1 (rounding may pass it by a hair)
                _between("similarity", ctx, min_value=0, max_value=1 + 1e-6),
                _row_count(ctx, ctx.thresholds.min_kept_share),
            ],
            derived={
                "not_itself": lambda: F.col("product_id") != F.col("similar_product_id"),
            },
            references=_products(ctx, "product_id", "similar_product_id"),
        )
    )


def product_associations(ctx: SuiteContext) -> Suite:
    from pyspark.sql import functions as F

    e = _gx()
    return _with_refs(
        Suite(
            "gold_product_associations",
            [
                e.ExpectColumnValuesToNotBeNull(column="antecedent"),
                *_key("rule"),
                e.ExpectColumnValuesToBeInSet(column="size", value_set=[2, 3]),
                e.ExpectColumnValuesToBeBetween(column="count", min_value=1),
                *(
                    e.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1)
                    for c in ("support", "confidence")
                ),
                e.ExpectColumnValuesToBeBetween(column="lift", min_value=0, strict_min=True),
                _row_count(ctx, ctx.thresholds.min_kept_share),
            ],
            derived={
                "rule": lambda: F.concat_ws(
                    " -> ", F.array_join("antecedent", ","), F.col("consequent").cast("string")
                ),
            },
            references=_products(ctx, "consequent"),
        )
    )


def trending_products(ctx: SuiteContext) -> Suite:
    e = _gx()
    return _with_refs(
        Suite(
            "gold_trending_products",
            [
                *_key("scope", "scope_value", "product_id"),
                e.ExpectColumnValuesToBeInSet(column="scope", value_set=TRENDING_SCOPES),
                e.ExpectColumnValuesToBeBetween(column="rank", min_value=1),
                e.ExpectColumnValuesToNotBeNull(column="trending_score"),
                e.ExpectColumnValuesToBeBetween(column="recent_weight", min_value=0),
                _row_count(ctx, ctx.thresholds.min_kept_share),
            ],
            references=_products(ctx, "product_id"),
        )
    )
