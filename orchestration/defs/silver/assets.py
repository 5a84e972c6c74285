"""Silver: typed, deduplicated, conformed, history-keeping tables built by Spark from bronze."""

from orchestration.lib.spark_steps import step_asset

DESCRIPTIONS = {
    "silver.geography": "Reference dim: area → city → region (current names).",
    "silver.product_hierarchy": "Reference dim: subcategory → category.",
    "silver.brands": "Reference dim: brands.",
    "silver.customers": "Customers, SCD type 2 (valid_from, valid_to, is_current): a new version "
    "whenever city/area, loyalty tier, status or another tracked attribute changes.",
    "silver.products": "Products, SCD type 2 on price, cost, brand, subcategory and status.",
    "silver.sales": "Invoice headers, one per invoice (latest ERP version), partitioned by "
    "invoice_date; cancellations and returns flagged; amounts reconciled with the lines.",
    "silver.sales_lines": "Invoice lines of the invoices in silver.sales.",
    "silver.sales_quarantine": "Invoices (with all their lines) and orphan lines that failed a "
    "rule: unreconciled amounts, negative quantity on a sale, unknown customer/product/invoice.",
    "silver.events": "Clean clickstream: deduplicated by event_id, in their true event_date "
    "partition, sessionised (session start/end, sequence), keyed to the customer and product "
    "versions valid at event time.",
    "silver.events_quarantine": "Events kept out of silver, with the reason: duplicate, from the "
    "future, later than the lateness window, unknown customer or product.",
}

REFERENCE_DEPS = {
    "silver.geography": ["bronze.mv_setup_city", "bronze.mv_setup_area"],
    "silver.product_hierarchy": ["bronze.mv_category", "bronze.mv_sub_category"],
    "silver.brands": ["bronze.mv_brand"],
    "silver.customers": ["bronze.mv_setup_customer", "silver.geography"],
    "silver.products": ["bronze.mv_setup_product", "silver.product_hierarchy", "silver.brands"],
}

reference_assets = [
    step_asset(
        table,
        tables=[table],
        deps=deps,
        descriptions=DESCRIPTIONS,
        group="silver",
        code="spark_jobs/silver_erp.py",
    )
    for table, deps in REFERENCE_DEPS.items()
]
silver_sales = step_asset(
    "silver.sales",
    tables=["silver.sales", "silver.sales_lines"],
    quarantine="silver.sales_quarantine",
    deps=["bronze.mv_sales", "bronze.mv_sales_detail", "silver.customers", "silver.products"],
    descriptions=DESCRIPTIONS,
    group="silver",
    code="spark_jobs/silver_erp.py",
)
silver_events = step_asset(
    "silver.events",
    tables=["silver.events"],
    quarantine="silver.events_quarantine",
    deps=["bronze.events", "silver.customers", "silver.products"],
    descriptions=DESCRIPTIONS,
    group="silver",
    code="spark_jobs/silver_events.py",
)
silver_assets = [*reference_assets, silver_sales, silver_events]
