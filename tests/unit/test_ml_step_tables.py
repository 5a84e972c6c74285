"""The ranker's tables computed ahead by Spark steps are read only when they fit the runner."""

from __future__ import annotations

import pandas as pd

from lakehouse.core.settings import Settings
from ml import RANKER_FEATURES
from ml.ranker import STATISTICS
from spark_jobs.recommender_training import FeatureSnapshots
from spark_jobs.training import Tables


def test_a_features_table_lacking_a_statistic_is_computed_in_process(tmp_path) -> None:  # noqa: ANN001
    """A table an older step wrote without a statistic the ranker now reads is not read: the
    runner says what it lacks and computes every snapshot itself."""
    tables = Tables(Settings(data_root=tmp_path).lake)
    assert FeatureSnapshots(tables, 14).stale == "does not exist"
    older = [name for name in STATISTICS if name != "viewed_price_tier_level"]
    tables.write(RANKER_FEATURES, pd.DataFrame({name: [1.0] for name in older}))
    source = FeatureSnapshots(tables, 14)
    assert source.stale == "lacks viewed_price_tier_level (built by an older version of its step)"
    assert source(pd.Timestamp("2025-01-01").date(), None) is None
    assert "computed in-process: 2025-01-01" in source.summary()
    assert "lacks viewed_price_tier_level" in source.summary()


def test_the_daily_rows_keep_their_dates_as_datetime64(tmp_path) -> None:  # noqa: ANN001
    """gold.customer_product_daily is read with datetime64 dates (the ranker turns them into day
    numbers at every cutoff); the span and the reasons still speak of calendar days."""
    import datetime as dt

    from spark_jobs.recommender_training import _bought_reasons, load_daily, recommender_span

    tables = Tables(Settings(data_root=tmp_path).lake)
    day = [dt.date(2025, 12, 1), dt.date(2025, 12, 9), dt.date(2025, 12, 20)]
    rows = pd.DataFrame(
        {"customer_id": [1, 1, 2], "product_id": [7, 7, 8], "interaction_date": day}
    ).assign(views=1, adds_to_cart=0, purchases=[1, 1, 0], weight=1.0)
    tables.write("gold.customer_product_daily", rows)
    daily = load_daily(tables)
    assert daily["interaction_date"].dtype.kind == "M"
    assert recommender_span(daily) == (day[0], day[1])  # the newest day with purchases
    assert recommender_span(rows) == (day[0], day[1])
    reasons = _bought_reasons(pd.DataFrame({"customer_id": [1], "product_id": [7]}), daily)
    assert reasons.tolist() == ["bought 2 times, last on 2025-12-09"]
