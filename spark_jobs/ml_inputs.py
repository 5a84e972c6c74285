"""The Spark side of the models: the heavy joins and aggregations over gold, as plain functions.

- `daily_interactions`: implicit feedback per customer × product × day (the recommenders' train
  and test sets are cut from it by date, so evaluation never sees the future).
- `item_cooccurrence`: item-item similarity (weighted cosine, Jaccard) from co-occurrence in
  customers' histories, top k per product: the neighbourhood CF of `gold.similar_products`,
  which `similar_products` completes with the content neighbours of the whole catalogue.
- `basket_rules`: support, confidence and lift of pairs and triples bought in one invoice:
  `gold.product_associations`.
- `trending_products`: trending score, velocity and seasonal boost per product, nationally and
  per city and area: `gold.trending_products`.
- `customer_product_features`: the learned ranker's statistics of every customer × product and
  customer as of each day the recommenders snapshot (`gold.customer_product_features`), by
  the ranker's own function.
- `customer_snapshots`: per customer and cutoff date, the features of ml.customer_models and the
  labels of the days after the cutoff.

The numpy/scipy implementations in `ml.recommenders` are the references these are tested
against (tests/integration/test_ml.py).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from spark_jobs.gold import interaction_rows

SIMILAR_PRODUCTS = 20  # neighbours per product and method in gold.similar_products
# gold.customer_product_features is computed per group of customers of about this many rows
FEATURE_GROUP_ROWS = 250_000
FEATURE_BATCH_ROWS = 1_000_000  # and written a batch of groups of about this many rows at a time
MIN_FEATURE_GROUPS = 2  # at least one per core of a small machine
MIN_PAIR_SUPPORT = 0.0005  # association rules: itemsets in at least 0.05 % of invoices


def daily_interactions(events: DataFrame, sales_lines: DataFrame) -> DataFrame:
    """(customer_id, product_id, interaction_date, views, adds_to_cart, purchases, weight, at):
    the undecayed INTERACTION_WEIGHTS sum of a day, `at` its last signal."""
    t = F.col("event_type")
    return (
        interaction_rows(events, sales_lines)
        .withColumn("interaction_date", F.to_date("at"))
        .groupBy("customer_id", "product_id", "interaction_date")
        .agg(
            F.sum((t == "product_view").cast("int")).alias("views"),
            F.sum((t == "add_to_cart").cast("int")).alias("adds_to_cart"),
            F.sum((t == "purchase").cast("int")).alias("purchases"),
            F.sum("w").alias("weight"),
            F.max("at").alias("at"),
        )
    )


def item_cooccurrence(
    interactions: DataFrame, k: int = 20, max_items_per_customer: int = 200
) -> DataFrame:
    """Top-k neighbours per product by weighted cosine and by Jaccard over the customers who
    took both: (product_id, rank, similar_product_id, similarity, method, co_customers).

    cosine = Σ w_a·w_b / (‖a‖·‖b‖) over customers (weights of `interactions.weight`);
    jaccard = |customers of a ∩ b| / |customers of a ∪ b|. A customer's history is capped at
    their `max_items_per_customer` heaviest products, so one bulk buyer cannot make the
    self-join quadratic in the catalogue.
    """
    heaviest = Window.partitionBy("customer_id").orderBy(F.desc("w"), "product_id")
    pairs = (
        interactions.where(F.col("weight") > 0)
        .select("customer_id", "product_id", F.col("weight").cast("double").alias("w"))
        .withColumn("_n", F.row_number().over(heaviest))
        .where(F.col("_n") <= max_items_per_customer)
        .drop("_n")
    )
    per_item = pairs.groupBy("product_id").agg(
        F.sqrt(F.sum(F.col("w") * F.col("w"))).alias("norm"), F.count("*").alias("customers")
    )
    a, b = pairs.alias("a"), pairs.alias("b")
    co = (
        a.join(b, (F.col("a.customer_id") == F.col("b.customer_id")))
        .where(F.col("a.product_id") < F.col("b.product_id"))
        .groupBy(F.col("a.product_id").alias("x"), F.col("b.product_id").alias("y"))
        .agg(F.sum(F.col("a.w") * F.col("b.w")).alias("dot"), F.count("*").alias("co"))
    )
    ix, iy = per_item.alias("ix"), per_item.alias("iy")
    scored = (
        co.join(ix, F.col("x") == F.col("ix.product_id"))
        .join(iy, F.col("y") == F.col("iy.product_id"))
        .select(
            "x",
            "y",
            "co",
            (F.col("dot") / (F.col("ix.norm") * F.col("iy.norm"))).alias("cosine"),
            (F.col("co") / (F.col("ix.customers") + F.col("iy.customers") - F.col("co"))).alias(
                "jaccard"
            ),
        )
    )
    both_ways = scored.unionByName(
        scored.select(F.col("y").alias("x"), F.col("x").alias("y"), "co", "cosine", "jaccard")
    )
    long = both_ways.select(
        F.col("x").alias("product_id"),
        F.col("y").alias("similar_product_id"),
        F.col("co").alias("co_customers"),
        F.explode(
            F.array(
                F.struct(F.lit("cf_cosine").alias("method"), F.col("cosine").alias("similarity")),
                F.struct(F.lit("cf_jaccard").alias("method"), F.col("jaccard").alias("similarity")),
            )
        ).alias("m"),
    ).select("product_id", "similar_product_id", "co_customers", "m.method", "m.similarity")
    best = Window.partitionBy("method", "product_id").orderBy(
        F.desc("similarity"), "similar_product_id"
    )
    return (
        long.withColumn("rank", F.row_number().over(best))
        .where(F.col("rank") <= k)
        .select(
            "product_id",
            F.col("rank").cast("int").alias("rank"),
            "similar_product_id",
            "similarity",
            "method",
            F.col("co_customers").cast("long").alias("co_customers"),
        )
    )


def similar_products(
    interactions: DataFrame, products: DataFrame, as_of: dt.date, k: int = SIMILAR_PRODUCTS
) -> DataFrame:
    """gold.similar_products: the co-occurrence neighbours of `item_cooccurrence` and the
    content neighbours (TF-IDF of name/brand/category and price band, computed in Python over
    the current catalogue, a dimension-sized frame) with method 'content'."""
    from ml.recommenders.content import similar_by_content

    cf = item_cooccurrence(interactions, k=k)
    content = similar_by_content(_catalogue(products), k).assign(method="content", co_customers=0)
    by_content = interactions.sparkSession.createDataFrame(content[cf.columns]).select(
        *(F.col(f.name).cast(f.dataType) for f in cf.schema)
    )
    return cf.unionByName(by_content).withColumn("as_of", F.lit(as_of))


def _catalogue(products: DataFrame) -> pd.DataFrame:
    """The current catalogue in the models' column names, as pandas (a dimension-sized frame)."""
    return (
        products.where("is_current")
        .selectExpr(
            "product_id",
            "product_name AS name",
            "brand_name AS brand",
            "category_name AS category",
            "subcategory_name AS subcategory",
            "CAST(list_price AS double) AS price",
        )
        .toArrow()
        .to_pandas()
    )


def customer_product_features(
    daily: DataFrame,
    products: DataFrame,
    test_days: int,
    group_rows: int = FEATURE_GROUP_ROWS,
    batch_rows: int = FEATURE_BATCH_ROWS,
) -> list[DataFrame]:
    """gold.customer_product_features, in batches of customers to write one after the other:
    what the learned ranker knows of every customer × product they took, and of the customer,
    at the end of each of its training cutoffs (`as_of`: `training.ranker_snapshot_days` of
    the `test_days` windows), for the customers who buy in the window after it. Computed by
    the ranker's own function (`ml.ranker.snapshot_statistics`) per group of about
    `group_rows` daily rows in parallel (each group's rows once, every day from them), so the
    table and the ranker's in-process snapshots cannot drift apart. A batch is the groups of
    about `batch_rows` rows: the Spark server holds a batch's output until it is written."""
    from pyspark import cloudpickle

    import ml.ranker
    from ml.ranker import STATISTICS, snapshot_statistics
    from spark_jobs.training import ranker_snapshot_days, test_window_days

    # the function travels by value with the plan: a Spark server started before an upgrade
    # (its Python workers keep the `ml` they imported) still runs this version of it
    cloudpickle.register_pickle_by_value(ml.ranker)
    first, newest_purchase, newest = daily.agg(
        F.min("interaction_date"),
        F.max(F.when(F.col("purchases") > 0, F.col("interaction_date"))),
        F.max("interaction_date"),
    ).collect()[0]
    # the windows end on the newest day with purchases, as the recommenders' runners' do
    end = newest_purchase or newest
    cutoffs = ranker_snapshot_days(test_days, first, end) if end is not None else []
    window = test_window_days(test_days, first, end) if end is not None else 0
    days = dict.fromkeys(cutoffs, window)  # each for the buyers of the window after it
    catalogue = _catalogue(products)[["product_id", "category", "subcategory", "brand", "price"]]
    schema = ", ".join(
        [f"{n} {'bigint' if t == 'int64' else 'double'}" for n, t in STATISTICS.items()]
        + ["as_of date"]
    )
    rows = daily.where(F.col("interaction_date") <= F.lit(end)).select(
        "customer_id",
        "product_id",
        "interaction_date",
        "views",
        "adds_to_cart",
        "purchases",
        "weight",
    )
    count = rows.count()
    groups = max(MIN_FEATURE_GROUPS, math.ceil(count / group_rows))
    per_batch = max(MIN_FEATURE_GROUPS, math.ceil(batch_rows / group_rows))
    group = F.col("customer_id") % groups
    # a group's rows travel once; each day's snapshot drops the rows after it. Its output comes
    # day after day, so the files' row groups mostly hold one day each (readers filter on it);
    # not sorted further: a sort would hold a whole partition in memory
    return [
        rows.where(group.between(first, first + per_batch - 1))
        .groupBy(group.alias("customer_group"))
        .applyInPandas(lambda part: snapshot_statistics(part, catalogue, days), schema)
        for first in range(0, groups, per_batch)
    ]


def basket_rules(sales_lines: DataFrame, min_support: float, max_size: int = 3) -> DataFrame:
    """Association rules X → y of products bought in one invoice (purchases, not cancelled),
    with support(X ∪ {y}) ≥ min_support: the columns of ml.recommenders.association.RULE_COLUMNS
    (antecedent as a sorted array) plus `rank` (per antecedent, by lift). Pairs always, triples
    when max_size = 3 (every sub-pair of a frequent triple is frequent, so joining frequent
    pairs with a third product finds them all)."""
    baskets = (
        sales_lines.where(~F.col("is_cancelled") & ~F.col("is_return"))
        .select("invoice_id", "product_id")
        .distinct()
        .cache()
    )
    n_baskets = baskets.select("invoice_id").distinct().count()
    min_count = max(1, math.ceil(min_support * n_baskets - 1e-9))
    items = (
        baskets.groupBy("product_id").agg(F.count("*").alias("n")).where(F.col("n") >= min_count)
    )
    frequent = baskets.join(items.select("product_id"), "product_id")
    a, b = frequent.alias("a"), frequent.alias("b")
    pair_baskets = a.join(b, "invoice_id").where(F.col("a.product_id") < F.col("b.product_id"))
    pairs = (
        pair_baskets.groupBy(F.col("a.product_id").alias("p1"), F.col("b.product_id").alias("p2"))
        .agg(F.count("*").alias("n"))
        .where(F.col("n") >= min_count)
    )
    support = items.select("product_id", (F.col("n") / n_baskets).alias("s"))
    rules = _rules(pairs, ["p1"], "p2", support, n_baskets).unionByName(
        _rules(pairs, ["p2"], "p1", support, n_baskets)
    )
    if max_size >= 3:
        c = frequent.alias("c")
        triples = (
            pair_baskets.select(
                "invoice_id", F.col("a.product_id").alias("p1"), F.col("b.product_id").alias("p2")
            )
            .join(pairs.select("p1", "p2"), ["p1", "p2"])
            .join(c, "invoice_id")
            .where(F.col("c.product_id") > F.col("p2"))
            .groupBy("p1", "p2", F.col("c.product_id").alias("p3"))
            .agg(F.count("*").alias("n"))
            .where(F.col("n") >= min_count)
        )
        pair_support = pairs.select(
            F.array("p1", "p2").alias("key"), (F.col("n") / n_baskets).alias("s")
        )
        for ante, cons in ((["p1", "p2"], "p3"), (["p1", "p3"], "p2"), (["p2", "p3"], "p1")):
            rules = rules.unionByName(_rules(triples, ante, cons, support, n_baskets, pair_support))
    by_lift = Window.partitionBy("antecedent").orderBy(
        F.desc("lift"), F.desc("confidence"), "consequent"
    )
    return rules.withColumn("rank", F.row_number().over(by_lift).cast("int"))


def _rules(
    itemsets: DataFrame,
    antecedent: list[str],
    consequent: str,
    item_support: DataFrame,
    n_baskets: int,
    pair_support: DataFrame | None = None,
) -> DataFrame:
    """Rules antecedent → consequent of itemsets (columns p1.., n) with their measures."""
    cons = item_support.select(
        F.col("product_id").alias(consequent), F.col("s").alias("consequent_support")
    )
    frame = itemsets.withColumn("antecedent", F.array(*antecedent)).join(cons, consequent)
    if pair_support is None:
        ante = item_support.select(
            F.col("product_id").alias(antecedent[0]), F.col("s").alias("antecedent_support")
        )
        frame = frame.join(ante, antecedent[0])
    else:
        frame = frame.join(
            pair_support.select(
                F.col("key").alias("antecedent"), F.col("s").alias("antecedent_support")
            ),
            "antecedent",
        )
    support = F.col("n") / F.lit(n_baskets)
    confidence = support / F.col("antecedent_support")
    return frame.select(
        "antecedent",
        F.col(consequent).alias("consequent"),
        F.lit(len(antecedent) + 1).alias("size"),
        F.col("n").cast("long").alias("count"),
        support.alias("support"),
        confidence.alias("confidence"),
        (confidence / F.col("consequent_support")).alias("lift"),
        "antecedent_support",
        "consequent_support",
    )


def trending_products(
    events: DataFrame,
    sales_lines: DataFrame,
    customers: DataFrame,
    as_of: dt.date,
    window_days: int = 7,
    half_life_days: float = 3.0,
    velocity_weight: float = 0.5,
    top_n: int = 50,
) -> DataFrame:
    """What is gaining attention, nationally and per city and area of the customer (current
    dim_customer row): (scope, scope_value, product_id, rank, trending_score, recent_weight,
    previous_weight, velocity, seasonal_boost, as_of).

    recent/previous: INTERACTION_WEIGHTS sums of the last `window_days` and the window before;
    velocity = (recent − previous) / (recent + previous + 1); decayed = the recent signals
    halved every `half_life_days`; seasonal_boost = 1 + 0.5·max(0, velocity of the product in
    the window that followed this date a year earlier) when the history reaches back a year
    (else 1); score = decayed / max(decayed in the scope) · (1 + velocity_weight·velocity) ·
    seasonal_boost. The top `top_n` per scope value are kept.
    """
    where = customers.where("is_current").select("customer_id", "city_name", "area_name")
    age = F.datediff(F.lit(as_of), F.to_date("at"))
    year_ago = age - 365
    # only the four windows the scores read, so the three scopes do not scan the whole history
    rows = (
        interaction_rows(events, sales_lines)
        .where(
            age.between(0, 2 * window_days - 1) | year_ago.between(-window_days, window_days - 1)
        )
        .join(where, "customer_id", "left")
    )

    def in_window(x: F.Column, lo: int, hi: int) -> F.Column:
        return F.when((x >= lo) & (x < hi), F.col("w")).otherwise(0.0)

    scopes = [
        ("global", F.lit("all")),
        ("city", F.col("city_name")),
        ("area", F.col("area_name")),
    ]
    frames = []
    for scope, value in scopes:
        grouped = (
            rows.withColumn("scope_value", value)
            .where(F.col("scope_value").isNotNull())
            .groupBy("scope_value", "product_id")
            .agg(
                F.sum(in_window(age, 0, window_days)).alias("recent_weight"),
                F.sum(in_window(age, window_days, 2 * window_days)).alias("previous_weight"),
                F.sum(
                    in_window(age, 0, window_days) * F.pow(F.lit(0.5), age / half_life_days)
                ).alias("decayed"),
                # a year ago: the window that followed this date, and the one before it
                F.sum(in_window(year_ago, -window_days, 0)).alias("next_last_year"),
                F.sum(in_window(year_ago, 0, window_days)).alias("before_last_year"),
            )
            .where(F.col("recent_weight") > 0)
            .withColumn("scope", F.lit(scope))
        )
        frames.append(grouped)
    scored = frames[0].unionByName(frames[1]).unionByName(frames[2])
    recent, previous = F.col("recent_weight"), F.col("previous_weight")
    velocity = (recent - previous) / (recent + previous + 1.0)
    nxt, before = F.col("next_last_year"), F.col("before_last_year")
    seasonal = F.when(
        nxt + before > 0, 1.0 + 0.5 * F.greatest(F.lit(0.0), (nxt - before) / (nxt + before + 1.0))
    ).otherwise(1.0)
    in_scope = Window.partitionBy("scope", "scope_value")
    score = (
        F.col("decayed")
        / F.max("decayed").over(in_scope)
        * (1.0 + velocity_weight * F.col("velocity"))
        * F.col("seasonal_boost")
    )
    best = in_scope.orderBy(F.desc("trending_score"), "product_id")
    return (
        scored.withColumn("velocity", velocity)
        .withColumn("seasonal_boost", seasonal)
        .withColumn("trending_score", score)
        .withColumn("rank", F.row_number().over(best).cast("int"))
        .where(F.col("rank") <= top_n)
        .select(
            "scope",
            "scope_value",
            "product_id",
            "rank",
            "trending_score",
            "recent_weight",
            "previous_weight",
            "velocity",
            "seasonal_boost",
            F.lit(as_of).alias("as_of"),
        )
    )


def customer_snapshots(
    spark: SparkSession,
    sales_lines: DataFrame,
    events: DataFrame,
    customers: DataFrame,
    products: DataFrame,
    cutoffs: Sequence[dt.date],
    propensity_days: int,
    churn_days: int,
    data_end: dt.date,
) -> DataFrame:
    """One row per customer registered by each cutoff: ml.customer_models FEATURES from data up
    to the cutoff, LABELS from the days after it (null where the label window passes
    `data_end`, the last day with data: such a snapshot is for scoring, not training)."""
    cut = spark.createDataFrame([(c,) for c in cutoffs], "cutoff_date date")
    category = products.select("product_sk", "category_id")
    invoices = (
        sales_lines.where(~F.col("is_cancelled"))
        .join(category, "product_sk", "left")
        .groupBy("customer_id", "invoice_id", "invoice_date", "is_return")
        .agg(
            F.sum("net_amount").cast("double").alias("net"),
            F.sum("gross_amount").cast("double").alias("gross"),
            F.sum(F.col("line_discount_amount") + F.col("coupon_amount"))
            .cast("double")
            .alias("discount"),
            F.count("*").alias("lines"),
            F.collect_set("product_id").alias("products"),
            F.collect_set("category_id").alias("categories"),
        )
        .crossJoin(F.broadcast(cut))
    )
    age = F.datediff(F.col("cutoff_date"), F.col("invoice_date"))  # 0 = on the cutoff day
    past = F.col("invoice_date") <= F.col("cutoff_date")
    order = past & ~F.col("is_return")

    def within(days: int) -> F.Column:
        return order & (age < days)

    def after(days: int) -> F.Column:
        return ~F.col("is_return") & (age < 0) & (age >= -days)

    def total(cond: F.Column, value: str | None = None) -> F.Column:
        return F.sum(F.when(cond, F.lit(1) if value is None else F.col(value)).otherwise(0))

    bought = invoices.groupBy("customer_id", "cutoff_date").agg(
        total(order).alias("frequency"),
        F.sum(F.when(past, F.col("net")).otherwise(0.0)).alias("monetary"),
        F.max(F.when(order, F.col("invoice_date"))).alias("last_order"),
        F.min(F.when(order, F.col("invoice_date"))).alias("first_order"),
        total(within(30)).alias("orders_30d"),
        total(within(90)).alias("orders_90d"),
        total(within(30), "net").cast("double").alias("spend_30d"),
        total(within(90), "net").cast("double").alias("spend_90d"),
        F.size(F.array_distinct(F.flatten(F.collect_list(F.when(order, F.col("products")))))).alias(
            "distinct_products"
        ),
        F.size(
            F.array_distinct(F.flatten(F.collect_list(F.when(order, F.col("categories")))))
        ).alias("distinct_categories"),
        total(past & F.col("is_return"), "lines").alias("return_lines"),
        total(order, "lines").alias("order_lines"),
        total(order, "discount").cast("double").alias("discount"),
        total(order, "gross").cast("double").alias("gross"),
        total(after(propensity_days)).alias("orders_next_propensity_window"),
        total(after(churn_days)).alias("orders_next_churn_window"),
        total(after(churn_days), "net").cast("double").alias("spend_next_churn_window"),
    )
    t = F.col("event_type")
    clicks = (
        events.where(F.col("customer_id").isNotNull())
        .select("customer_id", "event_date", "event_type", "session_id")
        .crossJoin(F.broadcast(cut))
        .where(
            (F.col("event_date") <= F.col("cutoff_date"))
            & (F.datediff(F.col("cutoff_date"), F.col("event_date")) < 30)
        )
        .groupBy("customer_id", "cutoff_date")
        .agg(
            F.countDistinct("session_id").alias("sessions_30d"),
            F.sum((t == "product_view").cast("int")).alias("product_views_30d"),
            F.sum((t == "add_to_cart").cast("int")).alias("add_to_carts_30d"),
        )
    )
    base = (
        customers.where("is_current")
        .select("customer_id", "registration_date")
        .crossJoin(F.broadcast(cut))
        .where(F.col("registration_date") < F.col("cutoff_date"))
        .join(bought, ["customer_id", "cutoff_date"], "left")
        .join(clicks, ["customer_id", "cutoff_date"], "left")
    )
    tenure = F.datediff(F.col("cutoff_date"), F.col("registration_date")).cast("double")
    frequency = F.coalesce(F.col("frequency"), F.lit(0)).cast("double")
    monetary = F.coalesce(F.col("monetary"), F.lit(0.0))

    def zero(name: str) -> F.Column:
        return F.coalesce(F.col(name), F.lit(0)).cast("double").alias(name)

    def label(name: str, days: int) -> F.Column:
        known = F.date_add(F.col("cutoff_date"), days) <= F.lit(data_end)
        return F.when(known, F.coalesce(F.col(name), F.lit(0)).cast("double")).alias(name)

    return base.select(
        "customer_id",
        "cutoff_date",
        F.coalesce(
            F.datediff(F.col("cutoff_date"), F.col("last_order")).cast("double"), tenure
        ).alias("recency_days"),
        frequency.alias("frequency"),
        monetary.alias("monetary"),
        tenure.alias("tenure_days"),
        F.when(frequency > 0, monetary / frequency).otherwise(0.0).alias("avg_basket_value"),
        zero("orders_30d"),
        zero("orders_90d"),
        zero("spend_30d"),
        zero("spend_90d"),
        zero("distinct_products"),
        zero("distinct_categories"),
        zero("sessions_30d"),
        zero("product_views_30d"),
        zero("add_to_carts_30d"),
        F.when(F.col("order_lines") > 0, F.col("return_lines") / F.col("order_lines"))
        .otherwise(0.0)
        .alias("return_rate"),
        F.when(F.col("gross") > 0, F.col("discount") / F.col("gross"))
        .otherwise(0.0)
        .alias("discount_share"),
        F.when(
            frequency >= 2,
            F.datediff(F.col("last_order"), F.col("first_order")) / (frequency - 1.0),
        )
        .otherwise(tenure)
        .alias("avg_days_between_orders"),
        label("orders_next_propensity_window", propensity_days),
        label("orders_next_churn_window", churn_days),
        label("spend_next_churn_window", churn_days),
    )
