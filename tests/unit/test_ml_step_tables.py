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
