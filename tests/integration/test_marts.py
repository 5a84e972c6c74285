"""The published warehouse of the tiny world (built through Dagster, tests/conftest.py): a build
reconciles with gold and records its dbt tests as asset checks; on a copy, readers never wait
or see a mix while `lakehouse marts build` publishes, and a failed or killed build publishes
nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.compute as pc
import pytest

from tests.conftest import LAKEHOUSE, World, cli_json, run_cli

pytestmark = pytest.mark.integration


def published(world: World) -> Path:
    return world.root / "warehouse" / "warehouse.duckdb"


def test_a_build_is_published_and_reconciles_with_gold(world: World) -> None:
    build = world.runs["marts"].values("build")[0]
    lines = world.table("gold.fact_sales_line", columns=["net_amount", "is_cancelled"])
    standing = lines.filter(pc.invert(lines["is_cancelled"]))
    expected = Decimal(str(pc.sum(standing["net_amount"]).as_py()))
    with duckdb.connect(str(published(world)), read_only=True) as con:
        stamp = con.execute("SELECT DISTINCT build_id FROM warehouse_build").fetchall()
        daily = con.execute("SELECT sum(net_revenue) FROM mart_daily_kpis").fetchone()[0]
        geo = con.execute("SELECT sum(net_revenue) FROM mart_geo_sales_monthly").fetchone()[0]
        customers = con.execute("SELECT sum(net_revenue) FROM mart_customer_360").fetchone()[0]
        sales = con.execute("SELECT sum(net_revenue) FROM mart_sales_daily").fetchone()[0]
    assert stamp == [(build["warehouse_build"],)]
    assert expected > 0
    assert daily == geo == customers == sales == expected
    assert build["tests_passed"] > 100 and build["models"] >= 20 and build["tests_failed"] == 0
    assert build["gold_versions"]["fact_sales_line"] == world.settings.lake.version(
        "gold.fact_sales_line"
    )
    assert Path(build["log"]).read_text().count("PASS") >= build["tests_passed"]


def test_the_dbt_tests_are_asset_checks_of_the_marts(world: World) -> None:
    outcome = world.runs["marts"]
    on_rfm = [c for c in outcome.checks if c["table"] == "marts.mart_customer_rfm"]
    assert on_rfm and all(c["passed"] for c in on_rfm)
    with dg.DagsterInstance.from_config(str(world.settings.dagster_home)) as instance:
        rfm = instance.get_latest_materialization_event(dg.AssetKey(["marts", "mart_customer_rfm"]))
    assert rfm.run_id == outcome.run_id
    build = outcome.values("build")[0]["warehouse_build"]
    assert rfm.asset_materialization.metadata["warehouse_build"].value == build


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
    world_copy: World, tmp_path: Path
) -> None:
    stop = tmp_path / "stop"
    before = cli_json("marts", "status", env=world_copy.env)["published"]
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(published(world_copy)), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    # what the reader reads, and what that needs (a --select build publishes only those)
    read = ("--select", "+mart_customer_rfm +mart_customer_360")
    try:
        builds = {
            cli_json("marts", "build", *read, "--as-of", day, env=world_copy.env)["build_id"]: day
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
    assert before in versions, "and the one published before them"
    for build_id, day in builds.items():
        assert next(iter(versions[build_id]))[0] == day
    assert len(report["seen"]) > 20


def test_a_failed_build_publishes_nothing(world_copy: World, tmp_path: Path) -> None:
    before = cli_json("marts", "status", env=world_copy.env)
    broken = {**world_copy.env, "LAKE_URI": str(tmp_path / "no-lake")}
    result = run_cli("marts", "build", env=broken, check=False)
    assert result.returncode == 1
    assert "the published warehouse is unchanged" in result.stderr
    assert cli_json("marts", "status", env=world_copy.env) == before


def test_a_build_killed_midway_leaves_the_published_warehouse_as_it_was(
    world_copy: World,
) -> None:
    """The fault suite's marts row: SIGKILL `lakehouse marts build` (and its dbt) while dbt
    works; the published warehouse is the one before, opens read-only, and the next build
    publishes without any cleanup."""
    before = cli_json("marts", "status", env=world_copy.env)
    logs = world_copy.root / "warehouse" / "dbt"
    known = set(logs.glob("build-*.log"))
    build = subprocess.Popen(
        [*LAKEHOUSE, "marts", "build"],
        env=world_copy.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: dbt goes down with it
    )
    deadline = time.monotonic() + 120
    while not set(logs.glob("build-*.log")) - known and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(logs.glob("build-*.log")) - known, "dbt never started"
    time.sleep(3)  # dbt is building models now
    assert build.poll() is None, "the build finished before it could be killed"
    os.killpg(build.pid, signal.SIGKILL)
    build.wait(timeout=30)

    assert cli_json("marts", "status", env=world_copy.env) == before
    with duckdb.connect(str(published(world_copy)), read_only=True) as con:
        assert con.execute("select count(*) from mart_customer_rfm").fetchone()[0] > 0
    after = cli_json("marts", "build", env=world_copy.env)
    assert after["build_id"] != before["published"]
    assert cli_json("marts", "status", env=world_copy.env)["published"] == after["build_id"]
