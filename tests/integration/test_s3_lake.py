"""The production storage path: the lake on S3 (LAKE_URI=s3://…, AWS_ENDPOINT_URL), here in the
embedded SeaweedFS that `lakehouse services up` runs, through the same CLI as the local lake:
ingest → ERP extract → silver/gold on Sail → marts with dbt-duckdb. Nothing lands on local
disk under the lake's name; every table is read back from S3; and two writers committing from
the same table version cannot both win (the store honours conditional puts). The models are
left out: the model registry refuses an S3 lake (docs/ml.md)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from lakehouse.core.settings import Settings
from tests.conftest import cli_json, isolated_env, run_cli, settings_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# the marts that need no model output
MARTS = (
    "+mart_daily_kpis +mart_sales_daily +mart_customer_rfm +mart_geo_sales_monthly "
    "+mart_product_performance +mart_funnel_daily"
)


def test_ingest_to_marts_on_an_s3_lake(tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "root")
    env |= {"LAKE_URI": "s3://lake/lake", "AWS_ENDPOINT_URL": env["LAKEHOUSE_BROKER_STORE_URL"]}
    settings = settings_of(env)
    run_cli("services", "up", env=env)
    try:
        cli_json("generate", "--preset", "tiny", env=env)
        produced = cli_json("produce", env=env)
        ingested = cli_json("ingest", env=env)
        assert ingested["events_written"] == produced["events"] > 0
        extracted = cli_json("extract", env=env)
        assert all(r["rows_written"] > 0 for r in extracted)
        transformed = cli_json("transform", env=env)
        assert {r["table"] for r in transformed} >= {"silver.events", "gold.fact_sales_line"}
        built = cli_json("marts", "build", "--select", MARTS, env=env)
        assert built["tests_failed"] == 0

        lake = settings.lake
        assert lake.uri == "s3://lake/lake" and lake.options["AWS_ENDPOINT_URL"]
        events = lake.open("bronze.events").to_pyarrow_table(columns=["event_id"]).num_rows
        assert events == produced["events"]
        lines = lake.open("gold.fact_sales_line").to_pyarrow_table(columns=["invoice_id"])
        assert lines.num_rows > 0
        with duckdb.connect(str(settings.warehouse_path / "warehouse.duckdb"), True) as con:
            kpis = con.execute("select sum(events) from mart_daily_kpis").fetchone()[0]
        assert kpis == events  # the marts read the S3 gold tables
        assert not (settings.data_root / "lake").exists()  # nothing went to local disk
        two_writers_from_one_version_cannot_both_commit(settings)
    finally:
        run_cli("services", "down", env=env, check=False)


def two_writers_from_one_version_cannot_both_commit(settings: Settings) -> None:
    """Delta commits on S3 are safe without a lock service only if the store refuses to
    overwrite a commit file: the second writer from the same version must fail, not win."""
    lake = settings.lake
    uri = lake.table_uri("bronze.commit_probe")
    write_deltalake(uri, pa.table({"v": [0]}), storage_options=lake.storage_options)
    first, second = (DeltaTable(uri, storage_options=lake.storage_options) for _ in range(2))
    write_deltalake(first, pa.table({"v": [1]}), mode="append")
    with pytest.raises(CommitFailedError):
        write_deltalake(
            second,
            pa.table({"v": [2]}),
            mode="append",
            commit_properties=CommitProperties(max_commit_retries=0),
        )
    table = DeltaTable(uri, storage_options=lake.storage_options)
    assert table.version() == 1 and sorted(table.to_pyarrow_table()["v"].to_pylist()) == [0, 1]
