"""The whole asset graph through Dagster on the demo world, then overlapping runs: the end-to-end
check that is too long for the test suite (about 5 minutes here).

    .venv/bin/python bench/whole_graph.py              # demo preset: 5,000 customers, ~1 M events
    .venv/bin/python bench/whole_graph.py --preset tiny  # the same checks in about a minute

In a fresh data root with its own embedded services: generate the ERP database, produce the
first days of the clickstream, then one run of every asset (Superset's aside: it needs its web
stack) through the same Python entry point the CLI uses. Then the last days of events arrive and
the nightly job's Spark part (`refresh_silver_gold`) and a streaming refresh are launched at the
same moment as `dagster job execute` processes: they must take turns at the steps they share
(one concurrency pool per step) and leave the tables consistent. Prints a table of phases with
their seconds and of checks with their results; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pyarrow.compute as pc
from common import free_port

from lakehouse.core.settings import Settings
from lakehouse.devstack.services import STORE_PORTS, ServiceManager, free_port_block
from orchestration.lib.runs import run_assets
from orchestration.lib.spark_steps import refresh_request

DAGSTER = str(Path(sys.executable).parent / "dagster")
LAST_DAYS = 6  # arrive after the first whole-graph run, for the overlapping refreshes


class Report:
    def __init__(self) -> None:
        self.phases: list[tuple[str, float, str]] = []
        self.checks: list[tuple[str, bool]] = []

    def phase(self, name: str, action: Callable[[], Any], describe: Callable[[Any], str]) -> Any:
        print(f"{name}…", file=sys.stderr, flush=True)
        started = time.monotonic()
        result = action()
        self.phases.append((name, time.monotonic() - started, describe(result)))
        return result

    def check(self, name: str, passed: bool) -> None:
        self.checks.append((name, bool(passed)))

    def print(self) -> None:
        print(f"\n{'phase':<48} {'seconds':>8}  result")
        for name, seconds, result in self.phases:
            print(f"{name:<48} {seconds:>8.1f}  {result}")
        print(f"\n{'check':<84} result")
        for name, passed in self.checks:
            print(f"{name:<84} {'ok' if passed else 'FAILED'}")


def _table(settings: Settings, name: str, columns: list[str] | None = None) -> Any:
    return settings.lake.open(name).to_pyarrow_table(columns=columns)


def _launch(job: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """A job run in its own process, as the schedule and the sensors file a refresh."""
    refresh = refresh_request()
    tags = json.dumps({"dagster/partition": refresh["partition_key"], **refresh["tags"]})
    command = [DAGSTER, "job", "execute", "-m", "orchestration.definitions", "-j", job]
    handle = log.open("w")
    return subprocess.Popen(
        [*command, "--tags", tags], env=env, stdout=handle, stderr=subprocess.STDOUT, text=True
    )


def whole_graph(settings: Settings, report: Report) -> dict[str, Any]:
    """Every asset but Superset's in one run; the checks on its results."""
    from orchestration.definitions import build_definitions

    graph = build_definitions(settings).resolve_asset_graph()
    keys = [
        k
        for k in graph.get_all_asset_keys()
        if graph.get(k).is_materializable and k != dg.AssetKey(["bi", "superset"])
    ]
    outcome = report.phase(
        f"whole graph ({len(keys)} assets)",
        lambda: run_assets(settings, keys),
        lambda o: "succeeded" if o.success else f"FAILED: {o.failures}",
    )
    report.check("every asset of the graph was materialised", outcome.success)
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        missing = [k for k in keys if instance.get_latest_materialization_event(k) is None]
        days = instance.get_materialized_partitions(dg.AssetKey(["silver", "events"]))
    report.check(f"no asset without a materialisation ({len(missing)} missing)", not missing)
    events = _table(settings, "silver.events", ["event_date"])
    built = {d.isoformat() for d in pc.unique(events["event_date"]).to_pylist()}
    report.check("every silver.events day built is a materialised partition", built <= days)
    return {"outcome": outcome}


def recommendations(settings: Settings, report: Report) -> None:
    customers = _table(settings, "gold.dim_customer", ["customer_id", "is_current"])
    current = set(customers.filter(customers["is_current"])["customer_id"].to_pylist())
    products = _table(settings, "gold.dim_product", ["product_id", "is_active", "is_current"])
    active = products.filter(pc.and_(products["is_current"], products["is_active"]))
    recs = _table(settings, "gold.customer_recommendations").to_pandas()
    evaluations = _table(settings, "gold.model_evaluations").to_pandas()
    evaluations = evaluations[evaluations["task"] == "recommendation"]
    newest = evaluations.sort_values("evaluated_at")["run_id"].iloc[-1]
    latest = evaluations[evaluations["run_id"] == newest]
    champion = latest.loc[latest["is_champion"], "model"].iloc[0]
    report.check(
        "one recommendation list per current customer", set(recs["customer_id"]) == current
    )
    report.check(
        "only active products recommended",
        set(recs["product_id"]) <= set(active["product_id"].to_pylist()),
    )
    report.check(
        "no product twice in a list", not recs.duplicated(["customer_id", "product_id"]).any()
    )
    report.check("every list comes from the champion", set(recs["model"]) == {champion})

    lines = _table(settings, "gold.fact_sales_line", ["net_amount", "is_cancelled"])
    gold_net = pc.sum(lines.filter(pc.invert(lines["is_cancelled"]))["net_amount"]).as_py()
    warehouse = Path(settings.warehouse_path) / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows, distinct, with_recs = con.execute(
            "select count(*), count(distinct customer_id), count(top_recommendations) "
            "from mart_customer_360"
        ).fetchone()
        mart_net = con.execute("select sum(net_revenue) from mart_sales_daily").fetchone()[0]
    report.check(
        "mart_customer_360: one row per current customer, each with recommendations",
        rows == distinct == with_recs == len(current),
    )
    report.check(
        "mart_sales_daily's net revenue equals gold's",
        abs(float(mart_net) - float(gold_net)) <= 1e-9 * abs(float(gold_net)),
    )


def overlap(settings: Settings, env: dict[str, str], start: dt.date, report: Report) -> None:
    """The last days arrive; a nightly-style refresh and a streaming refresh at once."""
    report.phase(
        f"produce the last {LAST_DAYS} days",
        lambda: _cli(["produce", "--start", start.isoformat()], env),
        lambda r: f"{r['events']:,} events",
    )
    report.phase(
        "ingest them (job ingest_clickstream)",
        lambda: run_assets(
            settings,
            [dg.AssetKey(["bronze", "events"]), dg.AssetKey(["bronze", "events_dead_letter"])],
        ),
        lambda o: "succeeded" if o.success else f"FAILED: {o.failures}",
    )
    root = settings.data_root
    since = time.time()

    def both() -> list[int]:
        nightly = _launch("refresh_silver_gold", env, root / "nightly.log")
        streaming = _launch("streaming_refresh", env, root / "streaming.log")
        return [nightly.wait(timeout=1800), streaming.wait(timeout=1800)]

    codes = report.phase(
        "refresh_silver_gold + streaming_refresh at once",
        both,
        lambda c: "both succeeded" if c == [0, 0] else f"exit codes {c}",
    )
    report.check("both overlapping runs succeeded", codes == [0, 0])
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        runs = [
            r.dagster_run
            for r in instance.get_run_records(limit=10)
            if r.create_timestamp.timestamp() >= since
        ]
        blocked = {
            e.message
            for run in runs
            for e in instance.all_logs(run.run_id)
            if "blocked by limit for pool" in (e.message or "")
        }
    report.check(
        "they took turns at silver.events (a step waited for its pool)",
        any("lake:silver.events" in m for m in blocked),
    )
    bronze = _table(settings, "bronze.events", ["event_id", "event_date"])
    silver = _table(settings, "silver.events", ["event_id"])
    quarantine = _table(settings, "silver.events_quarantine", ["event_id"])
    kept = set(silver["event_id"].to_pylist()) | set(quarantine["event_id"].to_pylist())
    report.check("each event once in silver", len(silver) == len(pc.unique(silver["event_id"])))
    report.check(
        "every bronze event is in silver or its quarantine",
        set(bronze["event_id"].to_pylist()) <= kept,
    )
    kpis = _table(settings, "gold.kpi_minute", ["events"])
    report.check("the minute KPIs add up to silver", pc.sum(kpis["events"]).as_py() == len(silver))
    results = _table(settings, "quality.validation_results", ["success", "validated_at"])
    recent = results.filter(
        pc.greater_equal(results["validated_at"], dt.datetime.fromtimestamp(since, dt.UTC))
    )
    report.check(
        "every validation since then passed", len(recent) > 0 and pc.all(recent["success"]).as_py()
    )


def _cli(args: list[str], env: dict[str, str]) -> dict:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lakehouse"), *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"lakehouse {' '.join(args)} failed:\n{result.stderr}")
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", help="world size (default: demo)")
    parser.add_argument("--keep", action="store_true", help="keep the data root afterwards")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-whole-graph-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LAKE_", "DAGSTER_"))},
        "LAKEHOUSE_DATA_ROOT": str(root),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "SPARK_REMOTE": f"sc://127.0.0.1:{free_port()}",
        "LAKEHOUSE_BROKER_STORE_URL": f"http://127.0.0.1:{free_port_block(STORE_PORTS)}",
        "LAKEHOUSE_REDIS_PORT": str(free_port()),
        "DAGSTER_HOME": str(root / "dagster"),
    }
    settings = Settings(
        data_root=root,
        kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        spark_remote=env["SPARK_REMOTE"],
        broker_store_url=env["LAKEHOUSE_BROKER_STORE_URL"],
        redis_port=int(env["LAKEHOUSE_REDIS_PORT"]),
    )
    services = ServiceManager(settings)
    report = Report()
    try:
        report.phase("services up", services.up, lambda s: f"{len(s)} services")
        report.phase(
            f"generate the {args.preset} ERP",
            lambda: _cli(["generate", "--preset", args.preset, "--no-events"], env),
            lambda r: f"{r['invoices_written']:,} invoices",
        )
        days = json.loads((settings.generated_dir / "manifest.json").read_text())["scale"]
        first_days = days["days"] - LAST_DAYS
        report.phase(
            f"produce the first {first_days} days",
            lambda: _cli(["produce", "--days", str(first_days)], env),
            lambda r: f"{r['events']:,} events",
        )
        whole_graph(settings, report)
        recommendations(settings, report)
        start = dt.date.fromisoformat(days["start"]) + dt.timedelta(days=first_days)
        overlap(settings, env, start, report)
    finally:
        services.down()
        report.print()
        print(f"\ndata root: {root}" + ("" if args.keep else " (removed)"))
        if not args.keep:
            subprocess.run(["rm", "-rf", str(root)], check=False)
    if not all(passed for _, passed in report.checks):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
