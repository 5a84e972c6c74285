"""The published warehouse on the shared gold world: a build reconciles with gold, readers never
wait or see a mix while builds run, a failed build publishes nothing, and the marts materialise
through Dagster with their dbt tests as asset checks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from tests.conftest import cli_json, dagster_materialize, run_cli

pytestmark = pytest.mark.integration


def published(env: dict[str, str]) -> Path:
    return Path(env["LAKEHOUSE_DATA_ROOT"]) / "warehouse" / "warehouse.duckdb"


@pytest.fixture(scope="module")
def built(gold_world: dict[str, str]) -> dict:
    return cli_json("marts", "build", env=gold_world)


def test_a_build_is_published_and_reconciles_with_gold(gold_world: dict, built: dict) -> None:
    lines = DeltaTable(f"{gold_world['LAKEHOUSE_DATA_ROOT']}/lake/gold/fact_sales_line")
    lines = lines.to_pyarrow_table(columns=["net_amount", "is_cancelled"])
    standing = lines.filter(pc.invert(lines["is_cancelled"]))
    expected = Decimal(str(pc.sum(standing["net_amount"]).as_py()))
    with duckdb.connect(str(published(gold_world)), read_only=True) as con:
        stamp = con.execute("SELECT DISTINCT build_id FROM warehouse_build").fetchall()
        daily = con.execute("SELECT sum(net_revenue) FROM mart_daily_kpis").fetchone()[0]
        geo = con.execute("SELECT sum(net_revenue) FROM mart_geo_sales_monthly").fetchone()[0]
        customers = con.execute("SELECT sum(net_revenue) FROM mart_customer_360").fetchone()[0]
        sales = con.execute("SELECT sum(net_revenue) FROM mart_sales_daily").fetchone()[0]
    assert stamp == [(built["build_id"],)]
    assert expected > 0
    assert daily == geo == customers == sales == expected
    assert built["tests_passed"] > 100 and built["models"] >= 20
    assert built["gold_versions"]["fact_sales_line"] == lines_version(gold_world)


def lines_version(env: dict[str, str]) -> int:
    return DeltaTable(f"{env['LAKEHOUSE_DATA_ROOT']}/lake/gold/fact_sales_line").version()


READER = textwrap.dedent(
    """
    import json, os, sys, duckdb
    path, stop = sys.argv[1], sys.argv[2]
    seen, errors = [], []
    while not os.path.exists(stop):
        try:
            with duckdb.connect(path, read_only=True) as con:
                row = con.execute(
                    "SELECT (SELECT max(build_id) FROM warehouse_build),"
                    " (SELECT max(as_of_date) FROM mart_customer_rfm),"
                    " (SELECT sum(recency_days) FROM mart_customer_rfm),"
                    " (SELECT count(*) FROM mart_customer_360)"
                ).fetchone()
            seen.append([str(v) for v in row])
        except Exception as exc:
            errors.append(repr(exc))
    print(json.dumps({"seen": seen, "errors": errors}))
    """
)


def test_readers_never_wait_nor_see_a_mix_while_two_builds_publish(
    gold_world: dict, built: dict, tmp_path: Path
) -> None:
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(published(gold_world)), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        builds = {
            cli_json("marts", "build", "--as-of", day, env=gold_world)["build_id"]: day
            for day in ("2025-09-20", "2025-09-25")
        }
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    report = json.loads(out)
    assert report["errors"] == []
    versions: dict[str, set] = {}
    for build_id, as_of, *rest in report["seen"]:
        versions.setdefault(build_id, set()).add((as_of, *rest))
    assert all(len(v) == 1 for v in versions.values()), "one build, one answer"
    assert set(builds) <= set(versions), "the reader saw both new builds"
    assert built["build_id"] in versions, "and the one published before them"
    for build_id, day in builds.items():
        assert next(iter(versions[build_id]))[0] == day
    assert len(report["seen"]) > 20


def test_a_failed_build_publishes_nothing(gold_world: dict, built: dict, tmp_path: Path) -> None:
    before = cli_json("marts", "status", env=gold_world)
    broken = {**gold_world, "LAKE_URI": str(tmp_path / "no-lake")}
    result = run_cli("marts", "build", env=broken, check=False)
    assert result.returncode == 1
    assert "the published warehouse is unchanged" in result.stderr
    assert cli_json("marts", "status", env=gold_world) == before


def test_the_marts_materialise_in_dagster_with_dbt_tests_as_checks(gold_world: dict) -> None:
    run = dagster_materialize("group:marts", gold_world)
    assert run.returncode == 0, run.stderr[-4000:]
    with dg.DagsterInstance.from_config(gold_world["DAGSTER_HOME"]) as instance:
        rfm = instance.get_latest_materialization_event(dg.AssetKey(["marts", "mart_customer_rfm"]))
        checks = instance.all_logs(rfm.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    build_id = rfm.asset_materialization.metadata["warehouse_build"].value
    assert build_id == cli_json("marts", "status", env=gold_world)["published"]
    evaluations = [entry.dagster_event.event_specific_data for entry in checks]
    on_rfm = [e for e in evaluations if e.asset_key == dg.AssetKey(["marts", "mart_customer_rfm"])]
    assert on_rfm and all(e.passed for e in on_rfm)
