"""Gold: the star schema, the recommenders' interactions and the "right now" KPI tables."""

from orchestration.lib.spark_steps import step_asset

DESCRIPTIONS = {
    "gold.dim_date": "Calendar: one row per day of every year with data (date_key yyyymmdd).",
    "gold.dim_geography": "Area → city → region.",
    "gold.dim_customer": "Customers, SCD2, with the city/area/region of each version.",
    "gold.dim_product": "Products, SCD2, with brand, category and subcategory of each version.",
    "gold.fact_sales_line": "Grain: invoice line. Keys of the customer/product versions valid at "
    "invoice time; gross, discounts, order coupon share, net, cost and margin.",
    "gold.fact_events": "Grain: clean clickstream event, keyed to dims.",
    "gold.fact_sessions": "Grain: session (filed under its start date): duration, funnel counts, "
    "orders, revenue, converted.",
    "gold.kpi_minute": "Events, sessions, funnel, orders, revenue and conversion per minute.",
    "gold.kpi_hourly": "The same per hour.",
    "gold.customer_product_interactions": "Implicit feedback per customer × product: views, "
    "carts and purchases, time-decayed (half-life INTERACTION_HALF_LIFE_DAYS): the recommenders' "
    "input.",
}

DEPS = {
    "gold.dim_date": ["silver.events", "silver.sales"],
    "gold.dim_geography": ["silver.geography"],
    "gold.dim_customer": ["silver.customers", "silver.geography"],
    "gold.dim_product": ["silver.products", "silver.product_hierarchy", "silver.brands"],
    "gold.fact_sales_line": [
        "silver.sales",
        "silver.sales_lines",
        "gold.dim_customer",
        "gold.dim_product",
        "gold.dim_geography",
        "gold.dim_date",
    ],
    "gold.fact_events": ["silver.events", "gold.dim_customer", "gold.dim_product", "gold.dim_date"],
    "gold.fact_sessions": ["silver.events", "gold.dim_date"],
    "gold.kpi_minute": ["silver.events"],
    "gold.kpi_hourly": ["silver.events"],
    "gold.customer_product_interactions": [
        "gold.fact_events",
        "gold.fact_sales_line",
        "gold.dim_customer",
        "gold.dim_product",
    ],
}

CODE = "spark_jobs/gold.py"

gold_assets = [
    step_asset(table, tables=[table], deps=deps, descriptions=DESCRIPTIONS, group="gold", code=CODE)
    for table, deps in DEPS.items()
]
