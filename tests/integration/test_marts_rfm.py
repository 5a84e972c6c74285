"""The dbt marts on the tiny world (tests/conftest.py): `mart_customer_rfm` against an
independent computation in pandas, and the incremental `mart_daily_kpis` carried on from the
previous warehouse against a build from an empty file.

The world comes in two halves, so gold changes between builds: after the first half the
incremental mart (and what it needs) was published; after the second the marts were built
carrying it on. A copy of the world then builds the marts into an empty warehouse.
"""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from deltalake import DeltaTable

from tests.conftest import SPLIT, World

pytestmark = pytest.mark.integration

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
MARTS = [
    "mart_customer_rfm",
    "mart_customer_360",
    "mart_geo_sales_monthly",
    "mart_geo_penetration",
    "mart_geo_category_preferences",
    "mart_product_performance",
    "mart_category_momentum",
    "mart_funnel_daily",
    "mart_cohort_retention",
    "mart_daily_kpis",
]


@pytest.fixture(scope="module")
def warehouses(world: World, world_copy: World) -> dict:
    """The world's warehouse (carried on) and one built from nothing on a copy of the world."""
    from tests.conftest import replace_settings

    empty = replace_settings(world_copy.settings, warehouse_path=world_copy.root / "empty")
    from_empty = World(empty).run(dg.AssetSelection.groups("marts"))
    return {
        "lake": world.root / "lake",
        "carried_on": Path(world.runs["marts"].values("build")[0]["build_file"]),
        "from_empty": Path(from_empty.values("build")[0]["build_file"]),
    }


def ntile(count: int, buckets: int = 5) -> list[int]:
    """SQL ntile: bucket numbers for `count` ordered rows, the first buckets one row larger."""
    size, larger = divmod(count, buckets)
    return [b + 1 for b in range(buckets) for _ in range(size + (b < larger))]


def expected_rfm(lake: Path) -> pd.DataFrame:
    """RFM computed from gold.fact_sales_line with pandas, following the mart's documentation."""
    lines = DeltaTable(f"{lake}/gold/fact_sales_line").to_pandas()
    as_of = lines["invoice_date"].max()  # default run date: the latest invoice day
    lines = lines[~lines["is_cancelled"] & (lines["invoice_date"] <= as_of)]
    purchases = lines[~lines["is_return"]]
    rfm = purchases.groupby("customer_id").agg(
        last_purchase_date=("invoice_date", "max"), frequency=("invoice_id", "nunique")
    )
    # monetary: net of returns, Decimal sums (exact)
    rfm["monetary"] = lines.groupby("customer_id")["net_amount"].agg(lambda s: sum(s, Decimal(0)))
    rfm = rfm.reset_index()
    rfm["recency_days"] = [(as_of - d).days for d in rfm["last_purchase_date"]]
    for score, keys, ascending in [
        ("r_score", ["recency_days", "customer_id"], [False, True]),
        ("f_score", ["frequency", "customer_id"], [True, True]),
        ("m_score", ["monetary", "customer_id"], [True, True]),
    ]:
        ordered = rfm.sort_values(keys, ascending=ascending)
        rfm.loc[ordered.index, score] = ntile(len(rfm))
    with open(DBT_PROJECT / "seeds" / "rfm_segment_rules.csv") as f:
        rules = sorted(csv.DictReader(f), key=lambda r: int(r["priority"]))

    def segment(row: pd.Series) -> str:
        for rule in rules:
            if all(
                int(rule[f"{k}_min"]) <= row[f"{k}_score"] <= int(rule[f"{k}_max"]) for k in "rfm"
            ):
                return rule["segment"]
        raise AssertionError(f"no rule for {row.to_dict()}")

    rfm["rfm_segment"] = rfm.apply(segment, axis=1)
    rfm["as_of_date"] = as_of
    return rfm.astype({"r_score": int, "f_score": int, "m_score": int})


def test_rfm_matches_an_independent_computation(warehouses: dict) -> None:
    expected = expected_rfm(warehouses["lake"]).set_index("customer_id").sort_index()
    with duckdb.connect(str(warehouses["from_empty"]), read_only=True) as con:
        # through Arrow, so that monetary stays a Decimal
        rfm = con.sql("select * from mart_customer_rfm").to_arrow_table().to_pandas()
    actual = rfm.set_index("customer_id").sort_index()
    assert len(actual) > 100
    assert list(actual.index) == list(expected.index)
    for column in ["recency_days", "frequency", "r_score", "f_score", "m_score", "rfm_segment"]:
        assert actual[column].tolist() == expected[column].tolist(), column
    assert actual["monetary"].tolist() == expected["monetary"].tolist()  # Decimals, exactly
    assert set(actual["as_of_date"]) == set(expected["as_of_date"])
    assert actual["last_purchase_date"].tolist() == expected["last_purchase_date"].tolist()
    assert actual["rfm_segment"].nunique() >= 6  # the scores spread over many segments


def test_a_build_carried_on_from_the_previous_warehouse_equals_one_from_scratch(
    warehouses: dict,
) -> None:
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{warehouses['carried_on']}' AS carried_on (READ_ONLY)")
        con.execute(f"ATTACH '{warehouses['from_empty']}' AS from_empty (READ_ONLY)")
        for mart in MARTS:
            rows = con.execute(f"select count(*) from from_empty.main.{mart}").fetchone()[0]
            assert rows > 0, mart
            differ = con.execute(
                f"select count(*) from ("
                f"(from carried_on.main.{mart} except all from from_empty.main.{mart}) union all "
                f"(from from_empty.main.{mart} except all from carried_on.main.{mart}))"
            ).fetchone()[0]
            assert differ == 0, mart
        # the second half of the ERP reached the days after the split
        late_sales = con.execute(
            f"select sum(orders) from carried_on.main.mart_daily_kpis where kpi_date >= '{SPLIT}'"
        ).fetchone()[0]
        assert late_sales > 0


def test_every_table_reads_from_a_fresh_read_only_connection(warehouses: dict) -> None:
    with duckdb.connect(str(warehouses["carried_on"]), read_only=True) as con:
        views = con.sql("select view_name from duckdb_views() where not internal").fetchall()
        assert views == []  # nothing that only the build's connection could resolve
        tables = con.sql("select schema_name, table_name from duckdb_tables()").fetchall()
        assert {t for _, t in tables} >= set(MARTS)
        for schema, name in tables:
            con.sql(f'select * from "{schema}"."{name}"').fetchall()
