"""gold on hand-made silver rows: dims, the sales fact's keys and coupon spread, sessions,
the KPI tables and the decayed interaction weights."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from spark_jobs import gold
from spark_jobs.silver_events import RECOMMENDATION_EVENT_COLUMNS, SILVER_EVENT_COLUMNS
from tests.transforms.frames import by, d, rows, ts

pytestmark = pytest.mark.integration

OPEN_END = ts("9999-12-31 00:00")
SCD2 = "valid_from TIMESTAMP, valid_to TIMESTAMP, is_current BOOLEAN, version INT"
CUSTOMERS = (
    "customer_sk BIGINT, customer_id BIGINT, customer_code STRING, customer_name STRING, "
    "gender STRING, birth_date DATE, customer_type STRING, loyalty_tier STRING, "
    f"city_id BIGINT, area_id BIGINT, registration_date DATE, status STRING, {SCD2}"
)
PRODUCTS = (
    "product_sk BIGINT, product_id BIGINT, sku STRING, product_name STRING, "
    "description STRING, brand_id BIGINT, subcategory_id BIGINT, list_price DECIMAL(14,2), "
    f"unit_cost DECIMAL(14,2), launch_date DATE, is_active BOOLEAN, {SCD2}"
)
GEOGRAPHY = "area_id BIGINT, area_name STRING, city_id BIGINT, city_name STRING, region STRING"
HIERARCHY = (
    "subcategory_id BIGINT, subcategory_name STRING, category_id BIGINT, category_name STRING"
)
BRANDS = "brand_id BIGINT, brand_name STRING"
SALES = (
    "invoice_id BIGINT, invoice_no STRING, invoice_time TIMESTAMP, invoice_date DATE, "
    "customer_id BIGINT, city_id BIGINT, area_id BIGINT, branch_code STRING, channel STRING, "
    "payment_type STRING, invoice_type STRING, is_return BOOLEAN, original_invoice_id BIGINT, "
    "status STRING, is_cancelled BOOLEAN, line_count INT, gross_amount DECIMAL(14,2), "
    "discount_amount DECIMAL(14,2), order_coupon_amount DECIMAL(14,2), "
    "net_amount DECIMAL(14,2), modified_at TIMESTAMP"
)
SALES_LINES = (
    "invoice_id BIGINT, line_no INT, invoice_date DATE, product_id BIGINT, quantity BIGINT, "
    "unit_price DECIMAL(14,2), discount_amount DECIMAL(14,2), line_amount DECIMAL(14,2), "
    "is_return BOOLEAN, is_cancelled BOOLEAN"
)
SILVER_EVENTS = (
    "event_id STRING, event_date DATE, event_time TIMESTAMP, event_type STRING, "
    "session_id STRING, session_start TIMESTAMP, session_end TIMESTAMP, event_seq INT, "
    "customer_id BIGINT, customer_sk BIGINT, product_id BIGINT, product_sk BIGINT, "
    "category_path STRING, brand STRING, price DECIMAL(14,2), quantity BIGINT, "
    "order_id BIGINT, search_query STRING, device STRING, city STRING, schema_version STRING, "
    "kafka_partition INT, kafka_offset BIGINT, kafka_timestamp TIMESTAMP"
)


def money(value: str) -> Decimal:
    return Decimal(value)


def customer(
    sk: int, customer_id: int, area: int, valid_from: str, valid_to=None, version: int = 1
) -> tuple:
    end = ts(valid_to) if valid_to else OPEN_END
    return (
        sk, customer_id, f"C{customer_id}", f"Customer {customer_id}", "M", None, "Individual",
        "Regular", 1, area, d("2025-01-01"), "Active", ts(valid_from), end, valid_to is None,
        version,
    )  # fmt: skip


def product(
    sk: int,
    product_id: int,
    list_price: str,
    unit_cost: str,
    valid_from: str,
    valid_to: str | None = None,
    *,
    brand: int = 5,
    subcategory: int = 11,
    version: int = 1,
) -> tuple:
    end = ts(valid_to) if valid_to else OPEN_END
    return (
        sk, product_id, f"SKU-{product_id}", f"Product {product_id}", None, brand, subcategory,
        money(list_price), money(unit_cost), d("2025-01-01"), True, ts(valid_from), end,
        valid_to is None, version,
    )  # fmt: skip


@pytest.fixture(scope="module")
def dims(spark) -> dict:
    """Customer 1 moved from area 10 to 20 on 03-01; product 10 got dearer and changed
    subcategory and brand on 02-15; product 11 has one version; product 12 an unknown brand."""
    return {
        "customers": spark.createDataFrame(
            [
                customer(11, 1, 10, "2025-01-01 00:00", "2025-03-01 00:00"),
                customer(12, 1, 20, "2025-03-01 00:00", version=2),
                customer(21, 2, 99, "2025-01-01 00:00"),
            ],
            CUSTOMERS,
        ),
        "products": spark.createDataFrame(
            [
                product(101, 10, "50.00", "30.00", "2025-01-01 00:00", "2025-02-15 00:00"),
                product(
                    102,
                    10,
                    "55.00",
                    "32.00",
                    "2025-02-15 00:00",
                    brand=6,
                    subcategory=21,
                    version=2,
                ),
                product(111, 11, "10.00", "4.00", "2025-01-01 00:00"),
                product(121, 12, "7.00", "3.00", "2025-01-01 00:00", brand=99),
            ],
            PRODUCTS,
        ),  # fmt: skip
        "geography": spark.createDataFrame(
            [
                (10, "Gulberg", 1, "Lahore", "Punjab"),
                (20, "Clifton", 2, "Karachi", "Sindh"),
            ],
            GEOGRAPHY,
        ),
        "hierarchy": spark.createDataFrame(
            [(11, "Phones", 1, "Electronics"), (21, "Tablets", 1, "Electronics")], HIERARCHY
        ),
        "brands": spark.createDataFrame([(5, "Acme"), (6, "Zeta")], BRANDS),
    }


# -- dims -----------------------------------------------------------------------------------


def test_dim_date_covers_whole_years_with_iso_fields(spark) -> None:
    frame = gold.dim_date(spark, d("2024-12-30"), d("2025-01-02"))
    days = by(frame, "date")
    assert len(days) == 366 + 365
    assert (min(days), max(days)) == (d("2024-01-01"), d("2025-12-31"))
    fields = ("date_key", "year", "quarter", "month", "month_name", "iso_week", "day_of_month",
              "day_of_week", "day_name", "is_weekend", "year_month")  # fmt: skip

    def get(day: str) -> tuple:
        return tuple(days[d(day)][f] for f in fields)

    assert get("2024-12-30") == (
        20241230, 2024, 4, 12, "December", 1, 30, 1, "Monday", False, "2024-12",
    )  # fmt: skip
    assert get("2025-01-05") == (
        20250105,
        2025,
        1,
        1,
        "January",
        1,
        5,
        7,
        "Sunday",
        True,
        "2025-01",
    )
    assert get("2024-01-06")[7:10] == (6, "Saturday", True)
    assert get("2024-02-29")[0] == 20240229
    assert get("2025-12-31")[1:] == (2025, 4, 12, "December", 1, 31, 3, "Wednesday", False,
                                     "2025-12")  # fmt: skip


def test_dim_customer_gives_each_version_the_geography_of_its_area(dims) -> None:
    geo = gold.dim_geography(dims["geography"])
    assert {r["area_id"]: r["city_name"] for r in rows(geo)} == {10: "Lahore", 20: "Karachi"}
    frame = gold.dim_customer(dims["customers"], dims["geography"])
    assert frame.columns[:2] == ["customer_sk", "customer_id"]
    got = {
        r["customer_sk"]: (r["customer_id"], r["area_name"], r["city_name"], r["region"],
                           r["version"], r["is_current"])
        for r in rows(frame)
    }  # fmt: skip
    assert got == {
        11: (1, "Gulberg", "Lahore", "Punjab", 1, False),
        12: (1, "Clifton", "Karachi", "Sindh", 2, True),
        21: (2, None, None, None, 1, True),  # an area silver.geography lacks
    }


def test_dim_product_gives_each_version_its_brand_and_hierarchy(dims) -> None:
    frame = gold.dim_product(dims["products"], dims["hierarchy"], dims["brands"])
    got = {
        r["product_sk"]: (r["brand_name"], r["subcategory_name"], r["category_name"],
                          r["list_price"])
        for r in rows(frame)
    }  # fmt: skip
    assert got == {
        101: ("Acme", "Phones", "Electronics", money("50.00")),
        102: ("Zeta", "Tablets", "Electronics", money("55.00")),
        111: ("Acme", "Phones", "Electronics", money("10.00")),
        121: (None, "Phones", "Electronics", money("7.00")),
    }


# -- fact_sales_line --------------------------------------------------------------------------

# invoice -> (time, customer, type, order coupon, lines: (line_no, product, qty, price,
# discount, amount))
INVOICES = {
    1: ("2025-02-10 12:00", 1, "Sale", "0.00", [(1, 10, 2, "50.00", "0.00", "100.00")]),
    # at the instant both customer 1 and product 10 got a new version
    2: ("2025-03-01 00:00", 1, "Sale", "0.00", [(1, 10, 1, "55.00", "5.00", "50.00")]),
    3: ("2025-03-05 09:00", 2, "Sale", "6.00",
        [(1, 11, 3, "10.00", "0.00", "30.00"), (2, 11, 1, "10.00", "0.00", "10.00")]),
    4: ("2025-03-05 10:00", 2, "Sale", "10.00",
        [(n, 11, 1, "10.00", "0.00", "10.00") for n in (1, 2, 3)]),
    5: ("2025-03-06 11:00", 2, "Return", "0.00", [(1, 11, -1, "10.00", "0.00", "-10.00")]),
}  # fmt: skip


def header_net(invoice_id: int) -> Decimal:
    _, _, _, coupon, lines = INVOICES[invoice_id]
    return sum(money(x[5]) for x in lines) - money(coupon)


@pytest.fixture(scope="module")
def sales_fact(spark, dims) -> dict:
    headers, lines = [], []
    for invoice_id, (at, customer_id, type_, coupon, items) in INVOICES.items():
        time = ts(at)
        is_return = type_ == "Return"
        gross = sum(q * money(p) for _, _, q, p, _, _ in items)
        discount = sum(money(x[4]) for x in items) + money(coupon)
        headers.append(
            (invoice_id, f"INV-{invoice_id}", time, time.date(), customer_id, 1, 10, "LHR-01",
             "Web", "Card", type_, is_return, 900 if is_return else None, "Completed", False,
             len(items), gross, discount, money(coupon), header_net(invoice_id), time)
        )  # fmt: skip
        lines += [
            (invoice_id, n, time.date(), p, q, money(u), money(dsc), money(a), is_return, False)
            for n, p, q, u, dsc, a in items
        ]
    frame = gold.fact_sales_line(
        spark.createDataFrame(headers, SALES),
        spark.createDataFrame(lines, SALES_LINES),
        dims["customers"],
        dims["products"],
    )
    return by(frame, "invoice_id", "line_no")


MEASURES = ("gross_amount", "line_discount_amount", "coupon_amount", "net_amount", "cost_amount",
            "margin_amount")  # fmt: skip


def measures(row: dict) -> tuple:
    return tuple(row[m] for m in MEASURES)


def test_fact_sales_line_takes_the_versions_valid_at_invoice_time(sales_fact) -> None:
    keys = {
        k: (r["customer_sk"], r["product_sk"], r["list_price_at_sale"], r["date_key"])
        for k, r in sales_fact.items()
        if k[0] in (1, 2)
    }
    assert keys == {
        (1, 1): (11, 101, money("50.00"), 20250210),
        (2, 1): (12, 102, money("55.00"), 20250301),
    }
    # cost and margin at the unit cost of that version: 2 x 30.00 and 1 x 32.00
    assert measures(sales_fact[(1, 1)]) == tuple(
        map(money, ("100.00", "0.00", "0.00", "100.00", "60.00", "40.00"))
    )
    assert measures(sales_fact[(2, 1)]) == tuple(
        map(money, ("55.00", "5.00", "0.00", "50.00", "32.00", "18.00"))
    )


def test_a_return_line_has_negative_amounts(sales_fact) -> None:
    r = sales_fact[(5, 1)]
    assert (r["is_return"], r["invoice_type"], r["customer_sk"], r["product_sk"]) == (
        True,
        "Return",
        21,
        111,
    )
    assert measures(r) == tuple(map(money, ("-10.00", "0.00", "0.00", "-10.00", "-4.00", "-6.00")))


def test_the_order_coupon_is_spread_in_proportion_to_line_amounts(sales_fact) -> None:
    # 6.00 over lines of 30.00 and 10.00
    assert measures(sales_fact[(3, 1)]) == tuple(
        map(money, ("30.00", "0.00", "4.50", "25.50", "12.00", "13.50"))
    )
    assert measures(sales_fact[(3, 2)]) == tuple(
        map(money, ("10.00", "0.00", "1.50", "8.50", "4.00", "4.50"))
    )


def test_the_last_line_takes_the_coupon_rounding_remainder(sales_fact) -> None:
    # 10.00 over three lines of 10.00: 3.33 + 3.33 + 3.34
    coupons = {n: sales_fact[(4, n)]["coupon_amount"] for n in (1, 2, 3)}
    assert coupons == {1: money("3.33"), 2: money("3.33"), 3: money("3.34")}
    nets = {n: sales_fact[(4, n)]["net_amount"] for n in (1, 2, 3)}
    assert nets == {1: money("6.67"), 2: money("6.67"), 3: money("6.66")}


def test_fact_lines_sum_to_the_header_net_amount(sales_fact) -> None:
    assert len(sales_fact) == sum(len(v[4]) for v in INVOICES.values())
    for invoice_id in INVOICES:
        lines = [r for k, r in sales_fact.items() if k[0] == invoice_id]
        assert sum(r["net_amount"] for r in lines) == header_net(invoice_id), invoice_id
        assert sum(r["coupon_amount"] for r in lines) == money(INVOICES[invoice_id][3])


# -- events: fact_events, fact_sessions, kpis -------------------------------------------------


def ev(event_id: str, at: str, session: str, type_: str = "page_view", **kw) -> dict:
    return {"id": event_id, "at": at, "session": session, "type": type_, **kw}


def silver_events(spark, *events: dict):
    """silver.events rows, with session bounds and event_seq worked out as silver does."""
    sessions: dict[str, list[dict]] = {}
    for e in events:
        sessions.setdefault(e["session"], []).append(e)
    out = []
    for session, evs in sessions.items():
        evs.sort(key=lambda e: (ts(e["at"]), e["id"]))
        start, end = ts(evs[0]["at"]), ts(evs[-1]["at"])
        for seq, e in enumerate(evs, 1):
            time = ts(e["at"])
            price = e.get("price")
            out.append(
                (e["id"], time.date(), time, e["type"], session, start, end, seq,
                 e.get("customer"), e.get("customer_sk"), e.get("product"), e.get("product_sk"),
                 None, None, money(price) if price else None, e.get("quantity"), e.get("order"),
                 e.get("query"), e.get("device", "mobile_web"), e.get("city", "Lahore"), "1.0",
                 0, len(out), time + dt.timedelta(seconds=30))
            )  # fmt: skip
    frame = spark.createDataFrame(out, SILVER_EVENTS)
    assert frame.columns == SILVER_EVENT_COLUMNS
    return frame


C1 = {"customer": 1, "customer_sk": 11}
C2 = {"customer": 2, "customer_sk": 21}


def test_fact_events_keeps_one_row_per_event_with_its_date_key(spark) -> None:
    events = silver_events(
        spark,
        ev("e1", "2025-03-01 23:59", "s", "product_view", product=10, product_sk=101, **C1),
        ev("e2", "2025-03-02 00:01", "s", "search", query="phone", **C1),
    )
    frame = gold.fact_events(events)
    assert frame.columns == [
        "event_id", "event_date", "event_time", "date_key", "event_type", "session_id",
        "event_seq", "customer_sk", "customer_id", "product_sk", "product_id", "device", "city",
        "search_query", "quantity", "price", "order_id",
    ]  # fmt: skip
    got = {
        r["event_id"]: (r["date_key"], r["event_seq"], r["product_sk"], r["search_query"])
        for r in rows(frame)
    }
    assert got == {"e1": (20250301, 1, 101, None), "e2": (20250302, 2, None, "phone")}


# Session "a": logged in, starts 03-01 23:50 and ends after midnight with an order of two lines.
# Session "b": anonymous on 03-02 until the visitor logs in to add to cart, then removes it.
SESSION_EVENTS = [
    ev("a1", "2025-03-01 23:50", "a", device="desktop_web", **C1),
    ev("a2", "2025-03-01 23:52", "a", "product_view", product=10, device="desktop_web", **C1),
    ev("a3", "2025-03-01 23:55", "a", "add_to_cart", product=10, device="desktop_web", **C1),
    ev("a4", "2025-03-02 00:05", "a", "purchase", product=10, price="25.00", quantity=2,
       order=500, device="desktop_web", **C1),
    ev("a5", "2025-03-02 00:05", "a", "purchase", product=11, price="10.00", quantity=1,
       order=500, device="desktop_web", **C1),
    ev("a6", "2025-03-02 00:10", "a", "search", query="case", device="desktop_web", **C1),
    ev("b1", "2025-03-02 10:00", "b", device="mobile_app_ios", city="Karachi"),
    ev("b2", "2025-03-02 10:01", "b", "product_view", product=11, device="mobile_app_ios",
       city="Karachi"),
    ev("b3", "2025-03-02 10:03", "b", "add_to_cart", product=11, device="mobile_app_ios",
       city="Lahore", **C2),
    ev("b4", "2025-03-02 10:04", "b", "remove_from_cart", product=11, device="mobile_app_ios",
       city="Lahore", **C2),
]  # fmt: skip
SESSION_FIELDS = (
    "session_date", "date_key", "session_start", "session_end", "duration_seconds",
    "customer_id", "customer_sk", "device", "city", "events", "page_views", "product_views",
    "searches", "adds_to_cart", "removes_from_cart", "purchase_lines", "orders", "revenue",
    "converted",
)  # fmt: skip


def test_a_session_crossing_midnight_is_filed_under_its_start_date(spark) -> None:
    events = silver_events(spark, *SESSION_EVENTS)
    day1 = by(gold.fact_sessions(events, [d("2025-03-01")]), "session_id")
    assert set(day1) == {"a"}
    assert tuple(day1["a"][f] for f in SESSION_FIELDS) == (
        d("2025-03-01"), 20250301, ts("2025-03-01 23:50"), ts("2025-03-02 00:10"), 1200,
        1, 11, "desktop_web", "Lahore", 6, 1, 1, 1, 1, 0, 2, 1, money("60.00"), True,
    )  # fmt: skip
    day2 = by(gold.fact_sessions(events, [d("2025-03-02")]), "session_id")
    assert set(day2) == {"b"}


def test_a_session_without_an_order_has_zero_revenue_and_its_first_device_and_city(
    spark,
) -> None:
    events = silver_events(spark, *SESSION_EVENTS)
    b = by(gold.fact_sessions(events, [d("2025-03-02")]), "session_id")["b"]
    assert tuple(b[f] for f in SESSION_FIELDS) == (
        d("2025-03-02"), 20250302, ts("2025-03-02 10:00"), ts("2025-03-02 10:04"), 240,
        2, 21, "mobile_app_ios", "Karachi", 4, 1, 1, 0, 1, 1, 0, 0, money("0.00"), False,
    )  # fmt: skip


KPI_EVENTS = [
    ev("k0", "2025-03-02 09:58:00", "s3"),
    ev("k1", "2025-03-02 10:00:05", "s1", "product_view", product=10, **C1),
    ev("k2", "2025-03-02 10:00:30", "s1", "add_to_cart", product=10, **C1),
    ev("k3", "2025-03-02 10:00:50", "s2", "product_view", product=11, **C2),
    ev("k4", "2025-03-02 10:01:10", "s1", "purchase", product=10, price="10.00", quantity=2,
       order=500, **C1),
    ev("k5", "2025-03-02 10:01:20", "s1", "purchase", product=11, price="5.00", quantity=1,
       order=500, **C1),
    ev("k6", "2025-03-02 10:01:40", "s3"),
]  # fmt: skip
KPI_FIELDS = ("events", "active_sessions", "new_sessions", "active_customers", "product_views",
              "adds_to_cart", "orders", "revenue", "conversion_rate")  # fmt: skip


def kpi_rows(spark, grain: str) -> dict:
    frame = gold.kpis(silver_events(spark, *KPI_EVENTS), grain)
    out = {}
    for r in rows(frame):
        assert r["event_date"] == d("2025-03-02")
        out[r["period_start"]] = tuple(r[f] for f in KPI_FIELDS)
    return out


def test_kpis_per_minute(spark) -> None:
    zero = money("0.00")
    assert kpi_rows(spark, "minute") == {
        ts("2025-03-02 09:58"): (1, 1, 1, 0, 0, 0, 0, zero, 0.0),
        # s1 and s2 start; customers 1 and 2; two views, one add to cart
        ts("2025-03-02 10:00"): (3, 2, 2, 2, 2, 1, 0, zero, 0.0),
        # s1's order of two lines (2 x 10.00 + 5.00) and anonymous s3 again: 1 order / 2 sessions
        ts("2025-03-02 10:01"): (3, 2, 0, 1, 0, 0, 1, money("25.00"), 0.5),
    }


def test_kpis_per_hour(spark) -> None:
    got = kpi_rows(spark, "hour")
    assert set(got) == {ts("2025-03-02 09:00"), ts("2025-03-02 10:00")}
    assert got[ts("2025-03-02 09:00")] == (1, 1, 1, 0, 0, 0, 0, money("0.00"), 0.0)
    *counts, rate = got[ts("2025-03-02 10:00")]
    assert counts == [6, 3, 2, 2, 2, 1, 1, money("25.00")]
    assert rate == pytest.approx(1 / 3)


# -- customer_product_interactions ------------------------------------------------------------

AS_OF = d("2025-03-31")
HALF_LIFE_DAYS = 10.0
FACT_LINES = (
    "customer_id BIGINT, product_id BIGINT, invoice_time TIMESTAMP, quantity BIGINT, "
    "is_cancelled BOOLEAN, is_return BOOLEAN"
)


@pytest.fixture(scope="module")
def interactions(spark) -> dict:
    events = silver_events(
        spark,
        ev("v1", "2025-03-31 20:00", "s1", "product_view", product=10, **C1),  # age 0: 1
        ev("v2", "2025-03-21 09:00", "s2", "add_to_cart", product=10, **C1),  # age 10: 3/2
        ev("v3", "2025-03-11 08:00", "s3", "product_view", product=10, **C1),  # age 20: 1/4
        ev("v4", "2025-03-11 08:05", "s3", "remove_from_cart", product=10, **C1),
        ev("v5", "2025-03-11 08:06", "s3", "search", query="phone", **C1),
        ev("v6", "2025-03-11 08:07", "s3", "page_view", **C1),
        ev("v7", "2025-03-30 10:00", "s4", "product_view", product=10),  # anonymous
        ev("v8", "2025-04-01 10:00", "s5", "product_view", product=10, **C1),  # after as_of
        ev("v9", "2025-03-16 10:00", "s6", "product_view", product=12, **C2),  # age 15
    )
    lines = spark.createDataFrame(
        [
            (1, 10, ts("2025-03-21 15:00"), 2, False, False),  # age 10: 5/2
            (1, 10, ts("2025-03-25 15:00"), 5, True, False),  # cancelled
            (1, 10, ts("2025-03-28 15:00"), -1, False, True),  # a return
            (2, 11, ts("2025-03-31 12:00"), 1, False, False),  # age 0: 5
        ],
        FACT_LINES,
    )
    frame = gold.customer_product_interactions(events, lines, AS_OF, HALF_LIFE_DAYS)
    return by(frame, "customer_id", "product_id")


def test_interactions_count_signals_per_customer_and_product(interactions) -> None:
    assert set(interactions) == {(1, 10), (2, 11), (2, 12)}
    r = interactions[(1, 10)]
    got = (r["views"], r["adds_to_cart"], r["purchases"], r["units_bought"], r["as_of"])
    assert got == (2, 1, 1, 2, AS_OF)
    assert (r["first_interaction"], r["last_interaction"]) == (
        ts("2025-03-11 08:00"),
        ts("2025-03-31 20:00"),
    )
    r = interactions[(2, 11)]
    assert (r["views"], r["adds_to_cart"], r["purchases"], r["units_bought"]) == (0, 0, 1, 1)


def test_interaction_weights_halve_every_half_life(interactions) -> None:
    # 1 x 1 + 3 x 1/2 + 1 x 1/4 + 5 x 1/2 (the purchase weighs 5 whatever its units)
    assert interactions[(1, 10)]["weight"] == pytest.approx(5.25)
    assert interactions[(2, 11)]["weight"] == pytest.approx(5.0)
    # 15 days is one and a half half-lives: 0.5 ** 1.5, rounded to 6 places
    assert interactions[(2, 12)]["weight"] == pytest.approx(0.353553, abs=1e-9)


SHOWN = (
    "event_id STRING, event_date DATE, event_time TIMESTAMP, event_type STRING, "
    "session_id STRING, customer_id BIGINT, customer_sk BIGINT, product_id BIGINT, "
    "product_sk BIGINT, request_id STRING, experiment STRING, variant STRING, "
    "model_version STRING, position INT, recommended_product_ids ARRAY<BIGINT>, device STRING, "
    "schema_version STRING, kafka_partition INT, kafka_offset BIGINT, kafka_timestamp TIMESTAMP"
)


def shown(spark, *events: tuple):
    """silver.recommendation_events rows: (id, at, session, request, products or None,
    clicked product or None, position or None)."""
    out = []
    for event_id, at, session, request, products, product, position in events:
        time = ts(at)
        kind = "recommendation_impression" if products else "recommendation_click"
        out.append(
            (event_id, time.date(), time, kind, session, 1, 11, product, None, request, "ab",
             "champion", "v1/hybrid", position, products, None, "1.1", 0, len(out), time)
        )  # fmt: skip
    frame = spark.createDataFrame(out, SHOWN)
    assert frame.columns == RECOMMENDATION_EVENT_COLUMNS
    return frame


def test_exposures_credit_clicks_and_the_latest_impression_before_a_cart_or_purchase(
    spark,
) -> None:
    recommendations = shown(
        spark,
        ("i1", "2025-03-01 23:51", "a", "r1", [10, 12], None, None),
        ("k1", "2025-03-01 23:52", "a", "r1", None, 10, 1),
        ("i2", "2025-03-01 23:58", "a", "r2", [11, 10], None, None),
        ("i3", "2025-03-02 10:00", "b", "r3", [11], None, None),
    )
    events = silver_events(spark, *SESSION_EVENTS)
    day1 = by(
        gold.recommendation_exposures(recommendations, events, [d("2025-03-01")]),
        "request_id",
        "product_id",
    )
    got = {k: (r["position"], r["clicked"], r["carted"], r["purchased"], r["revenue"])
           for k, r in day1.items()}  # fmt: skip
    assert got == {
        # carted at 23:55, after r1 and before r2 showed it
        ("r1", 10): (1, True, True, False, money("0")),
        ("r1", 12): (2, False, False, False, money("0")),
        # bought after midnight: r2 was the last to show each product
        ("r2", 11): (1, False, False, True, money("10.00")),
        ("r2", 10): (2, False, False, True, money("50.00")),
    }
    day2 = by(
        gold.recommendation_exposures(recommendations, events, [d("2025-03-02")]),
        "request_id",
        "product_id",
    )
    # session b carted product 11 after r3 showed it, then removed it: the cart still counts
    assert {k: (r["carted"], r["purchased"]) for k, r in day2.items()} == {
        ("r3", 11): (True, False)
    }
