"""Delta Lake through Spark Connect on Sail: write, MERGE, time travel, then delta-rs reads it."""

from __future__ import annotations

import pytest
from deltalake import DeltaTable

from lakehouse.core.settings import Settings

pytestmark = pytest.mark.integration


def test_write_merge_time_travel_and_delta_rs(spark, platform_settings: Settings) -> None:
    path = platform_settings.lake.table_uri("test.customers_merge")
    spark.createDataFrame(
        [(1, "Lahore", 10.0), (2, "Karachi", 20.0), (3, "Multan", 30.0)],
        "customer_id INT, city STRING, spend DOUBLE",
    ).write.format("delta").mode("overwrite").save(path)

    spark.createDataFrame(
        [(2, "Islamabad", 25.0), (4, "Quetta", 40.0)], "customer_id INT, city STRING, spend DOUBLE"
    ).createOrReplaceTempView("customer_updates")
    spark.sql(
        f"""
        MERGE INTO delta.`{path}` AS t
        USING customer_updates AS s ON t.customer_id = s.customer_id
        WHEN MATCHED THEN UPDATE SET *
        WHEN NOT MATCHED THEN INSERT *
        """
    ).collect()

    def rows(df) -> list[tuple]:
        return [tuple(r) for r in df.orderBy("customer_id").collect()]

    current = rows(spark.read.format("delta").load(path))
    assert current == [
        (1, "Lahore", 10.0),
        (2, "Islamabad", 25.0),
        (3, "Multan", 30.0),
        (4, "Quetta", 40.0),
    ]
    original = rows(spark.read.format("delta").option("versionAsOf", 0).load(path))
    assert original == [(1, "Lahore", 10.0), (2, "Karachi", 20.0), (3, "Multan", 30.0)]

    table = DeltaTable(path)
    assert table.version() == 1
    assert [h["operation"] for h in table.history()] == ["MERGE", "CREATE TABLE"]
    by_rs = sorted(tuple(r.values()) for r in table.to_pyarrow_table().to_pylist())
    assert by_rs == current
    table.load_as_version(0)
    assert sorted(tuple(r.values()) for r in table.to_pyarrow_table().to_pylist()) == original
