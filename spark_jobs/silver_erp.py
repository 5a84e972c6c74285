"""Silver from the ERP's bronze tables: reference dims, SCD2 customers/products, conformed sales.

Plain functions `(inputs) -> DataFrame`; the runner (spark_jobs/pipeline.py) reads and writes.
Bronze ERP tables hold every extracted version of a row (an extraction's lookback re-reads some),
so each function first reduces them to distinct versions by (key, ModifiedAt).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

# valid_to of a current SCD2 version: far enough never to end, a real timestamp for range joins.
OPEN_END = "9999-12-31 00:00:00"
MONEY = "decimal(14,2)"
# Amounts may differ by rounding of the source's NUMERIC(14,2) stored as floating point.
AMOUNT_TOLERANCE = 0.011


def versions(bronze: DataFrame, key: list[str]) -> DataFrame:
    """One row per (key, ModifiedAt): the extraction lookback's re-reads removed."""
    w = Window.partitionBy(*key, "ModifiedAt").orderBy(F.col("_extracted_at").desc())
    return bronze.withColumn("_n", F.row_number().over(w)).where("_n = 1").drop("_n")


def latest(bronze: DataFrame, key: list[str]) -> DataFrame:
    """The current version of each row (greatest ModifiedAt, then the latest extraction)."""
    w = Window.partitionBy(*key).orderBy(F.col("ModifiedAt").desc(), F.col("_extracted_at").desc())
    return bronze.withColumn("_n", F.row_number().over(w)).where("_n = 1").drop("_n")


def geography(cities: DataFrame, areas: DataFrame) -> DataFrame:
    """Reference dim: one row per area with its city and region (current names)."""
    city = latest(cities, ["CityID"]).select(
        F.col("CityID").alias("city_id"),
        F.col("CityName").alias("city_name"),
        F.col("Region").alias("region"),
    )
    area = latest(areas, ["AreaID"]).select(
        F.col("AreaID").alias("area_id"),
        F.col("AreaName").alias("area_name"),
        F.col("CityID").alias("city_id"),
    )
    return area.join(city, "city_id", "left").select(
        "area_id", "area_name", "city_id", "city_name", "region"
    )


def product_hierarchy(categories: DataFrame, subcategories: DataFrame) -> DataFrame:
    """Reference dim: one row per subcategory with its category (brands are silver.brands)."""
    category = latest(categories, ["CategoryID"]).select(
        F.col("CategoryID").alias("category_id"), F.col("CategoryName").alias("category_name")
    )
    sub = latest(subcategories, ["SubCategoryID"]).select(
        F.col("SubCategoryID").alias("subcategory_id"),
        F.col("SubCategoryName").alias("subcategory_name"),
        F.col("CategoryID").alias("category_id"),
    )
    return sub.join(category, "category_id", "left").select(
        "subcategory_id", "subcategory_name", "category_id", "category_name"
    )


def brands(bronze_brands: DataFrame) -> DataFrame:
    return latest(bronze_brands, ["BrandID"]).select(
        F.col("BrandID").alias("brand_id"), F.col("BrandName").alias("brand_name")
    )


def scd2(
    bronze: DataFrame, key: str, tracked: list[str], rename: dict[str, str], sk: str
) -> DataFrame:
    """SCD type 2 from the extracted versions of a master table.

    A new version starts when a tracked attribute changes; its valid_from is the ModifiedAt of
    that change (the first version is valid from CreatedAt). valid_to is the next version's
    valid_from (OPEN_END for the current one). The surrogate key hashes (key, valid_from), so
    re-running yields the same keys.
    """
    by_time = Window.partitionBy(key).orderBy("ModifiedAt", "_extracted_at")
    fingerprint = F.xxhash64(
        *[F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) for c in tracked]
    )
    changes = (
        versions(bronze, [key])
        .withColumn("_fp", fingerprint)
        .withColumn("_prev_fp", F.lag("_fp").over(by_time))
        .where(F.col("_prev_fp").isNull() | (F.col("_fp") != F.col("_prev_fp")))
    )
    ordered = Window.partitionBy(key).orderBy("ModifiedAt")
    out = (
        changes.withColumn("version", F.row_number().over(ordered))
        .withColumn(
            "valid_from",
            F.when(F.col("version") == 1, F.least("CreatedAt", "ModifiedAt")).otherwise(
                F.col("ModifiedAt")
            ),
        )
        .withColumn(
            "valid_to",
            F.coalesce(F.lead("ModifiedAt").over(ordered), F.to_timestamp(F.lit(OPEN_END))),
        )
        .withColumn("is_current", F.lead("ModifiedAt").over(ordered).isNull())
    )
    out = out.select(
        *[F.col(src).alias(dst) for src, dst in rename.items()],
        F.col("valid_from").cast("timestamp").alias("valid_from"),
        F.col("valid_to").cast("timestamp").alias("valid_to"),
        "is_current",
        F.col("version").cast("int").alias("version"),
    )
    return out.withColumn(sk, F.xxhash64(rename[key], "valid_from")).select(sk, *out.columns)


CUSTOMER_COLUMNS = {
    "CustomerID": "customer_id",
    "CustomerCode": "customer_code",
    "CustomerName": "customer_name",
    "Gender": "gender",
    "BirthDate": "birth_date",
    "CustomerType": "customer_type",
    "Segment": "loyalty_tier",
    "CityID": "city_id",
    "AreaID": "area_id",
    "RegistrationDate": "registration_date",
    "Status": "status",
}
PRODUCT_COLUMNS = {
    "ProductID": "product_id",
    "SKU": "sku",
    "ProductName": "product_name",
    "Description": "description",
    "BrandID": "brand_id",
    "SubCategoryID": "subcategory_id",
    "ListPrice": "list_price",
    "UnitCost": "unit_cost",
    "LaunchDate": "launch_date",
    "IsActive": "is_active",
}


def customers(bronze_customers: DataFrame) -> DataFrame:
    """silver.customers: SCD2 on everything but contact details (phone/email are not history)."""
    tracked = [c for c in CUSTOMER_COLUMNS if c != "CustomerID"]
    return scd2(bronze_customers, "CustomerID", tracked, CUSTOMER_COLUMNS, "customer_sk")


def products(bronze_products: DataFrame) -> DataFrame:
    """silver.products: SCD2 on price, cost, classification, brand and status."""
    tracked = [c for c in PRODUCT_COLUMNS if c != "ProductID"]
    out = scd2(bronze_products, "ProductID", tracked, PRODUCT_COLUMNS, "product_sk")
    return out.withColumn("list_price", F.col("list_price").cast(MONEY)).withColumn(
        "unit_cost", F.col("unit_cost").cast(MONEY)
    )


def _money(column: str) -> Column:
    return F.round(F.col(column), 2).cast(MONEY)


def sales(
    bronze_sales: DataFrame,
    bronze_lines: DataFrame,
    known_invoices: DataFrame,
    known_customers: DataFrame,
    known_products: DataFrame,
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(silver.sales, silver.sales_lines, quarantine) for the invoices given.

    bronze_sales/bronze_lines: the bronze rows of the invoices being (re)built; known_*: single
    `id` columns of every invoice/customer/product id there is (orphan checks). An invoice is
    quarantined whole, with all its lines, when any rule fails, so silver never holds half an
    invoice and header totals always equal the sum of their lines.
    """
    header = latest(bronze_sales, ["InvoiceID"])
    line = latest(bronze_lines, ["InvoiceID", "LineNo"])
    totals = line.groupBy("InvoiceID").agg(
        F.count("*").alias("line_count"),
        F.sum(F.col("Quantity") * F.col("UnitPrice")).alias("_lines_gross"),
        F.sum("DiscountAmount").alias("_lines_discount"),
        F.sum("LineAmount").alias("_lines_amount"),
        F.sum(F.when(F.col("Quantity") < 0, 1).otherwise(0)).alias("_negative_lines"),
        F.sum(F.when(F.col("Quantity") > 0, 1).otherwise(0)).alias("_positive_lines"),
        F.sum(
            F.when(
                F.abs(
                    F.col("Quantity") * F.col("UnitPrice")
                    - F.col("DiscountAmount")
                    - F.col("LineAmount")
                )
                > AMOUNT_TOLERANCE,
                1,
            ).otherwise(0)
        ).alias("_bad_line_amounts"),
    )
    orphan_lines = (
        line.join(known_products.withColumnRenamed("id", "ProductID"), "ProductID", "left_anti")
        .groupBy("InvoiceID")
        .agg(F.count("*").alias("_unknown_products"))
    )
    cust = known_customers.select(
        F.col("id").alias("CustomerID"), F.lit(True).alias("_customer_known")
    )
    orig = known_invoices.select(
        F.col("id").alias("OriginalInvoiceID"), F.lit(True).alias("_original_known")
    )
    h = (
        header.join(totals, "InvoiceID", "left")
        .join(orphan_lines, "InvoiceID", "left")
        .join(cust, "CustomerID", "left")
        .join(orig, "OriginalInvoiceID", "left")
    )
    is_return = F.col("InvoiceType") == "Return"
    coupon = F.col("DiscountAmount") - F.col("_lines_discount")
    reason = (
        F.when(F.col("line_count").isNull(), "invoice has no lines")
        .when(
            F.col("_customer_known").isNull(),
            F.concat(F.lit("unknown customer "), F.col("CustomerID")),
        )
        .when(F.col("_unknown_products") > 0, "line references an unknown product")
        .when(~is_return & (F.col("_negative_lines") > 0), "negative quantity on a sale")
        .when(is_return & (F.col("_positive_lines") > 0), "positive quantity on a return")
        .when(is_return & F.col("_original_known").isNull(), "return references an unknown invoice")
        .when(F.col("_bad_line_amounts") > 0, "line amount != quantity x price - discount")
        .when(
            F.abs(F.col("GrossAmount") - F.col("_lines_gross")) > AMOUNT_TOLERANCE,
            "gross amount != sum of line quantity x price",
        )
        .when(
            F.abs(F.col("NetAmount") - (F.col("GrossAmount") - F.col("DiscountAmount")))
            > AMOUNT_TOLERANCE,
            "net amount != gross - discount",
        )
        .when(
            F.abs(F.col("NetAmount") - (F.col("_lines_amount") - coupon)) > AMOUNT_TOLERANCE,
            "net amount != sum of line amounts - order coupon",
        )
    )
    h = h.withColumn("quarantine_reason", reason).withColumn(
        "invoice_date", F.to_date("InvoiceDate")
    )

    good = h.where(F.col("quarantine_reason").isNull())
    silver_sales = good.select(
        F.col("InvoiceID").alias("invoice_id"),
        F.col("InvoiceNo").alias("invoice_no"),
        F.col("InvoiceDate").cast("timestamp").alias("invoice_time"),
        "invoice_date",
        F.col("CustomerID").alias("customer_id"),
        F.col("CityID").alias("city_id"),
        F.col("AreaID").alias("area_id"),
        F.col("BranchCode").alias("branch_code"),
        F.col("Channel").alias("channel"),
        F.col("PaymentType").alias("payment_type"),
        F.col("InvoiceType").alias("invoice_type"),
        is_return.alias("is_return"),
        F.col("OriginalInvoiceID").alias("original_invoice_id"),
        F.col("Status").alias("status"),
        (F.col("Status") == "Cancelled").alias("is_cancelled"),
        F.col("line_count").cast("int").alias("line_count"),
        _money("GrossAmount").alias("gross_amount"),
        _money("DiscountAmount").alias("discount_amount"),
        F.round(coupon, 2).cast(MONEY).alias("order_coupon_amount"),
        _money("NetAmount").alias("net_amount"),
        F.col("ModifiedAt").cast("timestamp").alias("modified_at"),
    )
    silver_lines = line.join(
        silver_sales.select(
            F.col("invoice_id").alias("InvoiceID"), "invoice_date", "is_return", "is_cancelled"
        ),
        "InvoiceID",
    ).select(
        F.col("InvoiceID").alias("invoice_id"),
        F.col("LineNo").cast("int").alias("line_no"),
        "invoice_date",
        F.col("ProductID").alias("product_id"),
        F.col("Quantity").alias("quantity"),
        _money("UnitPrice").alias("unit_price"),
        _money("DiscountAmount").alias("discount_amount"),
        _money("LineAmount").alias("line_amount"),
        "is_return",
        "is_cancelled",
    )
    bad = h.where(F.col("quarantine_reason").isNotNull())
    quarantine = bad.select(
        F.lit("MV_Sales").alias("source_table"),
        F.col("InvoiceID").alias("invoice_id"),
        F.lit(None).cast("int").alias("line_no"),
        "invoice_date",
        F.col("quarantine_reason").alias("reason"),
        F.to_json(F.struct(*[c for c in header.columns if not c.startswith("_")])).alias("row"),
    ).unionByName(
        line.join(bad.select("InvoiceID", "invoice_date", "quarantine_reason"), "InvoiceID").select(
            F.lit("MV_SalesDetail").alias("source_table"),
            F.col("InvoiceID").alias("invoice_id"),
            F.col("LineNo").cast("int").alias("line_no"),
            "invoice_date",
            F.col("quarantine_reason").alias("reason"),
            F.to_json(F.struct(*[c for c in line.columns if not c.startswith("_")])).alias("row"),
        )
    )
    return silver_sales, silver_lines, quarantine


def orphan_lines(bronze_lines: DataFrame, known_invoices: DataFrame) -> DataFrame:
    """Quarantine rows for lines whose invoice header does not exist (no date to file them by)."""
    line = latest(bronze_lines, ["InvoiceID", "LineNo"])
    orphans = line.join(
        known_invoices.withColumnRenamed("id", "InvoiceID"), "InvoiceID", "left_anti"
    )
    return orphans.select(
        F.lit("MV_SalesDetail").alias("source_table"),
        F.col("InvoiceID").alias("invoice_id"),
        F.col("LineNo").cast("int").alias("line_no"),
        F.lit(None).cast("date").alias("invoice_date"),
        F.lit("line of an unknown invoice").alias("reason"),
        F.to_json(F.struct(*[c for c in line.columns if not c.startswith("_")])).alias("row"),
    )
