"""silver_erp on hand-made bronze ERP rows: extraction re-reads, current reference names, SCD2
versions and keys, and the whole-invoice reconciliation rules of silver.sales."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from spark_jobs import silver_erp
from tests.transforms.frames import by, d, ntz, rows, ts

pytestmark = pytest.mark.integration

# Every bronze ERP table: the source columns (naive timestamps, NUMERIC as DOUBLE, integers as
# BIGINT, as the ERP extraction writes them) and the extraction's lineage columns.
AUDIT = "CreatedAt TIMESTAMP_NTZ, ModifiedAt TIMESTAMP_NTZ"
LINEAGE = "_source_table STRING, _extracted_at TIMESTAMP, _extract_id STRING, _extract_mode STRING"
CITY = f"CityID BIGINT, CityName STRING, Region STRING, {AUDIT}, {LINEAGE}"
AREA = f"AreaID BIGINT, AreaName STRING, CityID BIGINT, {AUDIT}, {LINEAGE}"
BRAND = f"BrandID BIGINT, BrandName STRING, {AUDIT}, {LINEAGE}"
CATEGORY = f"CategoryID BIGINT, CategoryName STRING, {AUDIT}, {LINEAGE}"
SUBCATEGORY = f"SubCategoryID BIGINT, SubCategoryName STRING, CategoryID BIGINT, {AUDIT}, {LINEAGE}"
CUSTOMER = (
    "CustomerID BIGINT, CustomerCode STRING, CustomerName STRING, Gender STRING, "
    "BirthDate DATE, CustomerType STRING, Segment STRING, Phone STRING, Email STRING, "
    f"CityID BIGINT, AreaID BIGINT, RegistrationDate DATE, Status STRING, {AUDIT}, {LINEAGE}"
)
PRODUCT = (
    "ProductID BIGINT, SKU STRING, ProductName STRING, Description STRING, BrandID BIGINT, "
    "SubCategoryID BIGINT, ListPrice DOUBLE, UnitCost DOUBLE, LaunchDate DATE, "
    f"IsActive BOOLEAN, {AUDIT}, {LINEAGE}"
)
SALES = (
    "InvoiceID BIGINT, InvoiceNo STRING, InvoiceDate TIMESTAMP_NTZ, CustomerID BIGINT, "
    "CityID BIGINT, AreaID BIGINT, BranchCode STRING, Channel STRING, PaymentType STRING, "
    "InvoiceType STRING, OriginalInvoiceID BIGINT, GrossAmount DOUBLE, DiscountAmount DOUBLE, "
    f"NetAmount DOUBLE, Status STRING, {AUDIT}, {LINEAGE}"
)
SALES_DETAIL = (
    "InvoiceID BIGINT, LineNo BIGINT, ProductID BIGINT, Quantity BIGINT, UnitPrice DOUBLE, "
    f"DiscountAmount DOUBLE, LineAmount DOUBLE, {AUDIT}, {LINEAGE}"
)
OPEN_END = ts("9999-12-31 00:00")


def audit(modified: str, extracted: str, created: str | None = None) -> tuple:
    """CreatedAt, ModifiedAt and the lineage of a row extracted at `extracted`."""
    return (
        ntz(created or modified),
        ntz(modified),
        "MV_Test",
        ts(extracted),
        f"extract-{extracted}",
        "incremental",
    )


def ids(spark, *values: int):
    return spark.createDataFrame([(v,) for v in values], "id BIGINT")


# -- versions / latest / reference dims -----------------------------------------------------


def test_versions_drops_lookback_re_reads_and_latest_takes_the_newest(spark) -> None:
    cities = spark.createDataFrame(
        [
            (1, "Lahore", "Punjab", *audit("2025-01-01 00:00", "2025-01-02 01:00")),
            (1, "Lahore", "Punjab", *audit("2025-01-01 00:00", "2025-01-03 01:00")),  # re-read
            (1, "Lahore City", "Punjab", *audit("2025-02-01 00:00", "2025-02-02 01:00")),
            (2, "Karachi", "Sindh", *audit("2025-01-01 00:00", "2025-01-02 01:00")),
        ],
        CITY,
    )
    kept = {
        (r["CityID"], r["ModifiedAt"], r["_extracted_at"])
        for r in rows(silver_erp.versions(cities, ["CityID"]))
    }
    assert kept == {
        (1, ntz("2025-01-01 00:00"), ts("2025-01-03 01:00")),
        (1, ntz("2025-02-01 00:00"), ts("2025-02-02 01:00")),
        (2, ntz("2025-01-01 00:00"), ts("2025-01-02 01:00")),
    }
    assert {r["CityID"]: r["CityName"] for r in rows(silver_erp.latest(cities, ["CityID"]))} == {
        1: "Lahore City",
        2: "Karachi",
    }


def test_geography_has_current_names_and_keeps_areas_of_unknown_cities(spark) -> None:
    cities = spark.createDataFrame(
        [
            (1, "Lahore", "Punjab", *audit("2025-01-01 00:00", "2025-01-02 01:00")),
            (1, "Lahore City", "Punjab", *audit("2025-02-01 00:00", "2025-02-02 01:00")),
            (2, "Karachi", "Sindh", *audit("2025-01-01 00:00", "2025-01-02 01:00")),
        ],
        CITY,
    )
    areas = spark.createDataFrame(
        [
            (10, "Gulberg", 1, *audit("2025-01-01 00:00", "2025-01-02 01:00")),
            (20, "Clifton", 1, *audit("2025-01-01 00:00", "2025-01-02 01:00")),
            (20, "Clifton", 2, *audit("2025-01-05 00:00", "2025-01-06 01:00")),  # re-assigned
            (30, "Nowhere", 9, *audit("2025-01-01 00:00", "2025-01-02 01:00")),
        ],
        AREA,
    )
    geo = silver_erp.geography(cities, areas)
    assert geo.columns == ["area_id", "area_name", "city_id", "city_name", "region"]
    assert {tuple(r.values()) for r in rows(geo)} == {
        (10, "Gulberg", 1, "Lahore City", "Punjab"),
        (20, "Clifton", 2, "Karachi", "Sindh"),
        (30, "Nowhere", 9, None, None),
    }


def test_product_hierarchy_and_brands_have_current_names(spark) -> None:
    categories = spark.createDataFrame(
        [
            (1, "Electronics", *audit("2025-01-01 00:00", "2025-01-02 01:00")),
            (1, "Electronics & Gadgets", *audit("2025-03-01 00:00", "2025-03-02 01:00")),
            (2, "Grocery", *audit("2025-01-01 00:00", "2025-01-02 01:00")),
        ],
        CATEGORY,
    )
    subcategories = spark.createDataFrame(
        [
            (11, "Phones", 1, *audit("2025-01-01 00:00", "2025-01-02 01:00")),
            (21, "Snacks", 2, *audit("2025-01-01 00:00", "2025-01-02 01:00")),
        ],
        SUBCATEGORY,
    )
    hierarchy = silver_erp.product_hierarchy(categories, subcategories)
    assert hierarchy.columns == [
        "subcategory_id",
        "subcategory_name",
        "category_id",
        "category_name",
    ]
    assert {tuple(r.values()) for r in rows(hierarchy)} == {
        (11, "Phones", 1, "Electronics & Gadgets"),
        (21, "Snacks", 2, "Grocery"),
    }
    brands = spark.createDataFrame(
        [
            (5, "Acme", *audit("2025-01-01 00:00", "2025-01-02 01:00")),
            (5, "ACME", *audit("2025-02-01 00:00", "2025-02-02 01:00")),
            (5, "ACME", *audit("2025-02-01 00:00", "2025-02-03 01:00")),
            (6, "Zeta", *audit("2025-01-01 00:00", "2025-01-02 01:00")),
        ],
        BRAND,
    )
    out = silver_erp.brands(brands)
    assert out.columns == ["brand_id", "brand_name"]
    assert {tuple(r.values()) for r in rows(out)} == {(5, "ACME"), (6, "Zeta")}


# -- SCD2 -----------------------------------------------------------------------------------


def customer(
    customer_id: int,
    modified: str,
    extracted: str,
    *,
    created: str,
    segment: str = "Regular",
    phone: str = "0300-0000001",
    area: int = 10,
    birth: str | None = "1990-05-01",
) -> tuple:
    return (
        customer_id,
        f"C{customer_id:05d}",
        f"Customer {customer_id}",
        "F",
        d(birth) if birth else None,
        "Individual",
        segment,
        phone,
        f"c{customer_id}@example.com",
        1,
        area,
        d("2025-01-01"),
        "Active",
        *audit(modified, extracted, created),
    )


# Customer 1: created 2025-01-01 08:00; a lookback re-read, a phone change (not history), a tier
# change and a change back. Customer 2: first extracted after a change (CreatedAt earlier).
CUSTOMER_1 = [
    customer(1, "2025-01-01 08:00", "2025-01-02 01:00", created="2025-01-01 08:00"),
    customer(1, "2025-01-01 08:00", "2025-01-03 01:00", created="2025-01-01 08:00"),
    customer(
        1, "2025-02-01 00:00", "2025-02-02 01:00", created="2025-01-01 08:00", phone="0300-0000002"
    ),
    customer(
        1,
        "2025-03-01 00:00",
        "2025-03-02 01:00",
        created="2025-01-01 08:00",
        phone="0300-0000002",
        segment="Silver",
    ),
]
CUSTOMER_1_LATER = customer(
    1,
    "2025-04-01 00:00",
    "2025-04-02 01:00",
    created="2025-01-01 08:00",
    phone="0300-0000002",
    segment="Regular",
)
CUSTOMER_2 = [
    customer(2, "2025-02-10 00:00", "2025-02-11 01:00", created="2025-01-15 10:00", area=20),
]


def test_scd2_starts_a_version_only_when_a_tracked_attribute_changes(spark) -> None:
    bronze = spark.createDataFrame([*CUSTOMER_1, CUSTOMER_1_LATER, *CUSTOMER_2], CUSTOMER)
    out = silver_erp.customers(bronze)
    assert out.columns == [
        "customer_sk",
        *silver_erp.CUSTOMER_COLUMNS.values(),
        "valid_from",
        "valid_to",
        "is_current",
        "version",
    ]
    got = {
        (r["customer_id"], r["version"]): (
            r["valid_from"],
            r["valid_to"],
            r["is_current"],
            r["loyalty_tier"],
            r["area_id"],
        )
        for r in rows(out)
    }
    assert got == {
        # version 1 from CreatedAt; the phone change on 02-01 is no new version
        (1, 1): (ts("2025-01-01 08:00"), ts("2025-03-01 00:00"), False, "Regular", 10),
        (1, 2): (ts("2025-03-01 00:00"), ts("2025-04-01 00:00"), False, "Silver", 10),
        # a change back is a change too
        (1, 3): (ts("2025-04-01 00:00"), OPEN_END, True, "Regular", 10),
        # first seen after a change: version 1 still starts at CreatedAt
        (2, 1): (ts("2025-01-15 10:00"), OPEN_END, True, "Regular", 20),
    }


def test_scd2_a_null_becoming_a_value_is_a_change(spark) -> None:
    bronze = spark.createDataFrame(
        [
            customer(
                3, "2025-01-01 00:00", "2025-01-02 01:00", created="2025-01-01 00:00", birth=None
            ),
            customer(
                3,
                "2025-01-10 00:00",
                "2025-01-11 01:00",
                created="2025-01-01 00:00",
                birth=None,
                phone="0300-9",
            ),
            customer(
                3,
                "2025-02-01 00:00",
                "2025-02-02 01:00",
                created="2025-01-01 00:00",
                birth="1985-07-07",
            ),
        ],
        CUSTOMER,
    )
    got = {
        r["version"]: (r["valid_from"], r["birth_date"]) for r in rows(silver_erp.customers(bronze))
    }
    assert got == {
        1: (ts("2025-01-01 00:00"), None),
        2: (ts("2025-02-01 00:00"), d("1985-07-07")),
    }


def test_scd2_surrogate_keys_hash_id_and_valid_from_and_survive_more_history(spark) -> None:
    before = silver_erp.customers(spark.createDataFrame([*CUSTOMER_1, *CUSTOMER_2], CUSTOMER))
    # a later extraction adds a version; rows arrive in another order, one more re-read
    after = silver_erp.customers(
        spark.createDataFrame(
            [CUSTOMER_1_LATER, *reversed(CUSTOMER_1), *CUSTOMER_2, CUSTOMER_1[0]], CUSTOMER
        )
    )
    hashed = before.select("customer_sk", F.xxhash64("customer_id", "valid_from").alias("expected"))
    assert all(r["customer_sk"] == r["expected"] for r in rows(hashed))
    first = by(before, "customer_id", "version")
    second = by(after, "customer_id", "version")
    assert len({r["customer_sk"] for r in second.values()}) == 4
    for key in [(1, 1), (1, 2), (2, 1)]:
        assert first[key]["customer_sk"] == second[key]["customer_sk"], key
    # only the version that stopped being current changed
    assert (first[(1, 2)]["valid_to"], first[(1, 2)]["is_current"]) == (OPEN_END, True)
    assert (second[(1, 2)]["valid_to"], second[(1, 2)]["is_current"]) == (
        ts("2025-04-01 00:00"),
        False,
    )
    # a re-run of the same input gives the same rows
    again = silver_erp.customers(spark.createDataFrame([*CUSTOMER_1, *CUSTOMER_2], CUSTOMER))
    assert by(again, "customer_sk") == by(before, "customer_sk")


def product(
    modified: str,
    extracted: str,
    *,
    price: float = 100.0,
    cost: float = 60.0,
    description: str | None = None,
) -> tuple:
    return (
        10,
        "SKU-10",
        "Phone X",
        description,
        5,
        11,
        price,
        cost,
        d("2025-01-01"),
        True,
        *audit(modified, extracted, "2025-01-01 00:00"),
    )


def test_products_version_on_price_with_money_columns(spark) -> None:
    bronze = spark.createDataFrame(
        [
            product("2025-01-01 00:00", "2025-01-02 01:00"),
            product("2025-02-01 00:00", "2025-02-02 01:00"),  # touched, nothing changed
            product("2025-03-01 00:00", "2025-03-02 01:00", price=120.0, cost=60.0),
            product("2025-04-01 00:00", "2025-04-02 01:00", price=120.0, description="Boxed"),
        ],
        PRODUCT,
    )
    out = silver_erp.products(bronze)
    assert dict(out.dtypes)["list_price"] == "decimal(14,2)"
    assert dict(out.dtypes)["unit_cost"] == "decimal(14,2)"
    got = {
        r["version"]: (
            r["valid_from"],
            r["valid_to"],
            r["list_price"],
            r["unit_cost"],
            r["description"],
        )
        for r in rows(out)
    }
    assert got == {
        1: (
            ts("2025-01-01 00:00"),
            ts("2025-03-01 00:00"),
            Decimal("100.00"),
            Decimal("60.00"),
            None,
        ),
        2: (
            ts("2025-03-01 00:00"),
            ts("2025-04-01 00:00"),
            Decimal("120.00"),
            Decimal("60.00"),
            None,
        ),
        3: (ts("2025-04-01 00:00"), OPEN_END, Decimal("120.00"), Decimal("60.00"), "Boxed"),
    }


# -- sales ----------------------------------------------------------------------------------


def invoice(
    invoice_id: int,
    gross: float,
    discount: float,
    net: float,
    *,
    customer: int = 1,
    type_: str = "Sale",
    original: int | None = None,
    status: str = "Completed",
    at: str = "2025-03-02 10:00",
    modified: str | None = None,
    extracted: str = "2025-03-03 01:00",
) -> tuple:
    return (
        invoice_id,
        f"INV-{invoice_id}",
        ntz(at),
        customer,
        1,
        10,
        "LHR-01",
        "Web",
        "Card",
        type_,
        original,
        gross,
        discount,
        net,
        status,
        *audit(modified or at, extracted, at),
    )


def line(
    invoice_id: int,
    line_no: int,
    product_id: int,
    quantity: int,
    price: float,
    discount: float,
    amount: float,
    *,
    modified: str = "2025-03-02 10:00",
    extracted: str = "2025-03-03 01:00",
) -> tuple:
    return (
        invoice_id,
        line_no,
        product_id,
        quantity,
        price,
        discount,
        amount,
        *audit(modified, extracted, "2025-03-02 10:00"),
    )


# invoice -> (header versions, line versions, quarantine reason or None for a clean invoice)
INVOICES = {
    # 2 x 50 - 10 and 1 x 30; a 12.00 order coupon on top of the line discounts
    1001: (
        [invoice(1001, 130.0, 22.0, 108.0)],
        [line(1001, 1, 10, 2, 50.0, 10.0, 90.0), line(1001, 2, 11, 1, 30.0, 0.0, 30.0)],
        None,
    ),
    1002: (
        [invoice(1002, 20.0, 0.0, 20.0)],
        [line(1002, 1, 10, 1, 50.0, 0.0, 50.0), line(1002, 2, 11, -1, 30.0, 0.0, -30.0)],
        "negative quantity on a sale",
    ),
    1003: (
        [invoice(1003, 50.0, 0.0, 50.0, customer=999)],
        [line(1003, 1, 10, 1, 50.0, 0.0, 50.0)],
        "unknown customer 999",
    ),
    1004: (
        [invoice(1004, 50.0, 0.0, 50.0)],
        [line(1004, 1, 555, 1, 50.0, 0.0, 50.0)],
        "line references an unknown product",
    ),
    # a return of invoice 900 (not in this batch): negative quantity, discount and amount
    1005: (
        [invoice(1005, -45.0, -5.0, -40.0, type_="Return", original=900)],
        [line(1005, 1, 10, -1, 45.0, -5.0, -40.0)],
        None,
    ),
    1006: (
        [invoice(1006, -50.0, 0.0, -50.0, type_="Return", original=4242)],
        [line(1006, 1, 10, -1, 50.0, 0.0, -50.0)],
        "return references an unknown invoice",
    ),
    1007: (
        [invoice(1007, 50.0, 0.0, 50.0, type_="Return", original=900)],
        [line(1007, 1, 10, 1, 50.0, 0.0, 50.0)],
        "positive quantity on a return",
    ),
    1008: ([invoice(1008, 10.0, 0.0, 10.0)], [], "invoice has no lines"),
    1009: (
        [invoice(1009, 20.0, 0.0, 20.0)],
        [line(1009, 1, 10, 2, 10.0, 0.0, 25.0)],
        "line amount != quantity x price - discount",
    ),
    1010: (
        [invoice(1010, 25.0, 0.0, 25.0)],
        [line(1010, 1, 10, 2, 10.0, 0.0, 20.0)],
        "gross amount != sum of line quantity x price",
    ),
    1011: (
        [invoice(1011, 20.0, 0.0, 19.0)],
        [line(1011, 1, 10, 2, 10.0, 0.0, 20.0)],
        "net amount != gross - discount",
    ),
    # gross and net each one cent off (within tolerance) add up to two cents against the lines
    1012: (
        [invoice(1012, 20.01, 0.0, 20.02)],
        [line(1012, 1, 10, 2, 10.0, 0.0, 20.0)],
        "net amount != sum of line amounts - order coupon",
    ),
    # one cent of floating-point drift is within tolerance
    1013: ([invoice(1013, 20.01, 0.0, 20.01)], [line(1013, 1, 10, 2, 10.0, 0.0, 20.0)], None),
    # cancelled the next morning, and its line changed: the latest versions count
    1014: (
        [
            invoice(1014, 60.0, 0.0, 60.0, at="2025-03-02 11:00"),
            invoice(
                1014,
                30.0,
                0.0,
                30.0,
                at="2025-03-02 11:00",
                status="Cancelled",
                modified="2025-03-03 07:00",
                extracted="2025-03-04 01:00",
            ),
        ],
        [
            line(1014, 1, 11, 2, 30.0, 0.0, 60.0, modified="2025-03-02 11:00"),
            line(
                1014,
                1,
                11,
                1,
                30.0,
                0.0,
                30.0,
                modified="2025-03-03 07:00",
                extracted="2025-03-04 01:00",
            ),
        ],
        None,
    ),
}
DAY = d("2025-03-02")


@pytest.fixture(scope="module")
def sales(spark) -> dict:
    """silver_erp.sales over INVOICES, collected once: {"sales", "lines", "quarantine"}."""
    headers = spark.createDataFrame([h for hs, _, _ in INVOICES.values() for h in hs], SALES)
    lines = spark.createDataFrame([x for _, ls, _ in INVOICES.values() for x in ls], SALES_DETAIL)
    known_invoices = ids(spark, 900, *INVOICES)
    out = silver_erp.sales(headers, lines, known_invoices, ids(spark, 1, 2), ids(spark, 10, 11))
    return {
        "sales": by(out[0], "invoice_id"),
        "lines": by(out[1], "invoice_id", "line_no"),
        "quarantine": rows(out[2]),
    }


def test_sales_quarantines_each_broken_invoice_with_its_reason(sales) -> None:
    headers = {
        r["invoice_id"]: r["reason"] for r in sales["quarantine"] if r["source_table"] == "MV_Sales"
    }
    assert headers == {i: reason for i, (_, _, reason) in INVOICES.items() if reason}
    assert set(sales["sales"]) == {i for i, (_, _, reason) in INVOICES.items() if not reason}
    assert all(
        r["invoice_date"] == DAY and r["line_no"] is None
        for r in sales["quarantine"]
        if r["source_table"] == "MV_Sales"
    )


def test_a_negative_quantity_on_a_sale_quarantines_the_whole_invoice(sales) -> None:
    assert not {k for k in sales["lines"] if k[0] == 1002}
    rejected = [r for r in sales["quarantine"] if r["invoice_id"] == 1002]
    assert {(r["source_table"], r["line_no"], r["reason"]) for r in rejected} == {
        ("MV_Sales", None, "negative quantity on a sale"),
        ("MV_SalesDetail", 1, "negative quantity on a sale"),
        ("MV_SalesDetail", 2, "negative quantity on a sale"),
    }
    # the rows as extracted, without lineage columns
    row = {r["line_no"]: json.loads(r["row"]) for r in rejected}
    assert (row[2]["ProductID"], row[2]["Quantity"], row[2]["LineAmount"]) == (11, -1, -30.0)
    assert not [k for k in row[2] if k.startswith("_")]
    assert (row[None]["InvoiceNo"], row[None]["NetAmount"]) == ("INV-1002", 20.0)


def test_every_line_of_a_quarantined_invoice_is_quarantined_with_it(sales) -> None:
    lines = {
        (r["invoice_id"], r["line_no"]): r["reason"]
        for r in sales["quarantine"]
        if r["source_table"] == "MV_SalesDetail"
    }
    expected = {(i, x[1]): reason for i, (_, ls, reason) in INVOICES.items() if reason for x in ls}
    assert lines == expected
    assert set(sales["lines"]) == {(1001, 1), (1001, 2), (1005, 1), (1013, 1), (1014, 1)}


def test_clean_sales_carry_the_order_coupon_and_flags(sales) -> None:
    s = sales["sales"][1001]
    assert (s["gross_amount"], s["discount_amount"], s["order_coupon_amount"]) == (
        Decimal("130.00"),
        Decimal("22.00"),
        Decimal("12.00"),
    )
    assert (s["net_amount"], s["line_count"], s["is_return"], s["is_cancelled"]) == (
        Decimal("108.00"),
        2,
        False,
        False,
    )
    assert (s["invoice_time"], s["invoice_date"], s["invoice_no"]) == (
        ts("2025-03-02 10:00"),
        DAY,
        "INV-1001",
    )
    r = sales["sales"][1005]
    assert (r["is_return"], r["original_invoice_id"], r["order_coupon_amount"]) == (
        True,
        900,
        Decimal("0.00"),
    )
    assert sales["lines"][(1005, 1)]["line_amount"] == Decimal("-40.00")
    assert sales["lines"][(1001, 1)]["discount_amount"] == Decimal("10.00")


def test_the_latest_versions_of_header_and_lines_are_used(sales) -> None:
    s = sales["sales"][1014]
    assert (s["status"], s["is_cancelled"], s["net_amount"]) == (
        "Cancelled",
        True,
        Decimal("30.00"),
    )
    assert s["modified_at"] == ts("2025-03-03 07:00")
    assert s["invoice_date"] == DAY  # the invoice's date, not the cancellation's
    line_ = sales["lines"][(1014, 1)]
    assert (line_["quantity"], line_["is_cancelled"], line_["invoice_date"]) == (1, True, DAY)


def test_orphan_lines_are_lines_of_unknown_invoices(spark) -> None:
    lines = spark.createDataFrame(
        [
            line(1001, 1, 10, 2, 50.0, 10.0, 90.0),
            line(7777, 1, 10, 1, 50.0, 0.0, 50.0),
            line(7777, 1, 10, 3, 50.0, 0.0, 150.0, modified="2025-03-02 12:00"),
            line(7777, 2, 11, 1, 30.0, 0.0, 30.0),
        ],
        SALES_DETAIL,
    )
    out = rows(silver_erp.orphan_lines(lines, ids(spark, 1001)))
    got = {
        (r["source_table"], r["invoice_id"], r["line_no"], r["invoice_date"], r["reason"]): (
            json.loads(r["row"])["Quantity"]
        )
        for r in out
    }
    assert got == {
        ("MV_SalesDetail", 7777, 1, None, "line of an unknown invoice"): 3,
        ("MV_SalesDetail", 7777, 2, None, "line of an unknown invoice"): 1,
    }
