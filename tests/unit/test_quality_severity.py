"""Which quality checks block and which warn, and where the warning bounds come from."""

from __future__ import annotations

import datetime as dt

from expectations import suites
from lakehouse.core.settings import Settings
from orchestration.defs.resources import resources


def _severities(suite: suites.Suite) -> dict[str, str]:
    out = {}
    for e in suite.expectations:
        column = getattr(e, "column", None) or "table"
        out[f"{e.expectation_type}({column})"] = e.severity.value
    return out


def _context(thresholds: suites.Thresholds) -> suites.SuiteContext:
    refs = {name: None for name in ("gold.dim_customer", "gold.dim_product")}
    refs |= {"gold.dim_geography": None, "gold.dim_date": None}
    return suites.SuiteContext(
        now=dt.datetime(2025, 1, 1),
        rows_before=1_000,
        source_newest=dt.datetime(2025, 1, 1),
        refs=refs,  # type: ignore[arg-type]
        thresholds=thresholds,
    )


def test_integrity_blocks_and_distribution_warns() -> None:
    severity = _severities(suites.fact_sales_line(_context(suites.Thresholds())))
    for blocking in (
        "expect_column_values_to_not_be_null(invoice_id)",
        "expect_compound_columns_to_be_unique(table)",
        "expect_column_values_to_be_in_set(quantity_sign_matches_type)",
        "expect_column_values_to_be_in_set(customer_sk_in_gold_dim_customer)",
    ):
        assert severity[blocking] == "critical", blocking
    for warning in (
        "expect_column_values_to_be_between(price_to_list)",
        "expect_table_row_count_to_be_between(table)",
        "expect_column_max_to_be_between(invoice_time)",
    ):
        assert severity[warning] == "warning", warning


def test_the_warning_bounds_come_from_the_settings(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("LAKEHOUSE_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("QUALITY_PRICE_TO_LIST_MIN", "0.05")
    monkeypatch.setenv("QUALITY_MIN_KEPT_SHARE", "0.2")
    settings = Settings()
    transform = resources(settings)["transform"]
    thresholds = transform.pipeline(None, settings.lake).config.thresholds  # type: ignore[attr-defined]
    assert (thresholds.price_to_list_min, thresholds.min_kept_share) == (0.05, 0.2)
    suite = suites.fact_sales_line(_context(thresholds))
    band = next(e for e in suite.expectations if getattr(e, "column", "") == "price_to_list")
    rows = next(e for e in suite.expectations if "row_count" in e.expectation_type)
    assert (band.min_value, band.max_value, rows.min_value) == (0.05, 2.0, 200)
