"""The whole asset graph through Dagster on the demo world, then overlapping runs.

One run of every asset through Dagster's Python API (Superset's aside: tests/browser starts a
Superset for it; `dagster asset materialize` refuses partitioned assets without a partition) on
the demo preset (5,000 customers, 1,000 products, 120 days, ~1 M events), with assertions
on the final marts and recommendations. Then new days of events arrive and a silver/gold refresh
(the nightly job's Spark part) and a streaming refresh are launched to overlap: they must take
turns at the tables they share (one concurrency pool per step) and leave them consistent.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from lakehouse.dagster_ui import prepare_instance
from lakehouse.settings import Settings
from orchestration.definitions import defs
from orchestration.lib.spark_steps import refresh_request
from tests.conftest import DAGSTER, cli_json
from warehouse.publish import Warehouse

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# One run of the whole graph, in a process with the world's environment (the definitions read
# their settings when they load).
MATERIALISE_ALL = """
import sys
import dagster as dg
from orchestration.definitions import defs
from orchestration.lib.spark_steps import refresh_request

graph = defs.resolve_asset_graph()
keys = [
    key for key in graph.get_all_asset_keys()
    if graph.get(key).is_materializable and key != dg.AssetKey(["bi", "superset"])
]
with dg.DagsterInstance.get() as instance:
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=keys, raise_on_error=False, **refresh_request()
    )
sys.exit(0 if result.success else 1)
"""
FIRST_DAYS = 114  # the last six days of the world arrive later, in the overlap test


def _settings(env: dict[str, str]) -> Settings:
    return Settings(data_root=env["LAKEHOUSE_DATA_ROOT"], dagster_home=env["DAGSTER_HOME"])


def _table(settings: Settings, name: str, columns: list[str] | None = None):
    layer, table = name.split(".")
    return DeltaTable(settings.table_uri(layer, table)).to_pyarrow_table(columns=columns)


@pytest.fixture(scope="module")
def demo_world(platform_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("orchestration")
    env = {
        **platform_env,
        "LAKEHOUSE_DATA_ROOT": str(root),
        "KAFKA_EVENTS_TOPIC": f"orchestration-{root.name}",
        "DAGSTER_HOME": str(root / "dagster"),
    }
    settings = _settings(env)
    prepare_instance(settings)  # what `lakehouse dagster up` writes: pools limited to one
    cli_json("generate", "--preset", "demo", "--no-events", env=env, timeout=300)
    produced = cli_json("produce", "--days", str(FIRST_DAYS), env=env, timeout=300)["events"]
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-c", MATERIALISE_ALL],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    seconds = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-5000:]
    print(f"\nwhole graph on the demo world ({produced:,} events): {seconds:.0f}s")
    return {"env": env, "settings": settings, "produced": produced}


def test_whole_graph_materialises_every_asset_and_the_days_it_built(demo_world: dict) -> None:
    settings = demo_world["settings"]
    graph = defs.resolve_asset_graph()
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        for key in graph.get_all_asset_keys():
            node = graph.get(key)
            if not node.is_materializable or key == dg.AssetKey(["bi", "superset"]):
                continue
            event = instance.get_latest_materialization_event(key)
            assert event is not None, f"{key.to_user_string()} was not materialised"
        # an incremental run records the days it rebuilt as partitions (the UI's status)
        days = instance.get_materialized_partitions(dg.AssetKey(["silver", "events"]))
    events = _table(settings, "silver.events", ["event_date"])
    built = {d.isoformat() for d in pc.unique(events["event_date"]).to_pylist()}
    assert built and built <= days
    bronze = DeltaTable(settings.table_uri("bronze", "events")).count()
    assert bronze >= demo_world["produced"] * 0.99


def test_marts_and_recommendations_are_complete_and_consistent(demo_world: dict) -> None:
    settings = demo_world["settings"]
    customers = _table(settings, "gold.dim_customer", ["customer_id", "is_current"])
    current = set(customers.filter(customers["is_current"])["customer_id"].to_pylist())
    products = _table(settings, "gold.dim_product", ["product_id", "is_active", "is_current"])
    active = set(
        products.filter(pc.and_(products["is_current"], products["is_active"]))[
            "product_id"
        ].to_pylist()
    )
    recs = _table(settings, "gold.customer_recommendations").to_pandas()
    evaluations = _table(settings, "gold.model_evaluations").to_pandas()
    evaluations = evaluations[evaluations["task"] == "recommendation"]
    newest = evaluations.sort_values("evaluated_at")["run_id"].iloc[-1]
    latest = evaluations[evaluations["run_id"] == newest]
    champion = latest.loc[latest["is_champion"], "model"].iloc[0]

    # one list per current customer, of active products, no product twice, from the champion
    assert set(recs["customer_id"]) == current
    assert set(recs["product_id"]) <= active
    assert not recs.duplicated(["customer_id", "product_id"]).any()
    assert recs.groupby("customer_id").size().max() == settings.ml_recommendations
    assert set(recs["model"]) == {champion}
    # the recommendations carry signal: the generator's true tastes beat chance
    truth = latest[(latest["model"] == champion) & (latest["population"] == "warm")]
    truth = truth.set_index("metric")["value"]
    assert truth["truth_top_category_share"] > 1.5 * truth["truth_chance_share"]

    lines = _table(settings, "gold.fact_sales_line", ["net_amount", "is_cancelled"])
    gold_net = pc.sum(lines.filter(pc.invert(lines["is_cancelled"]))["net_amount"]).as_py()
    warehouse = Warehouse(settings.warehouse_path)
    with duckdb.connect(str(warehouse.current), read_only=True) as con:
        rows = con.execute(
            "select count(*), count(distinct customer_id), count(rfm_segment), "
            "count(top_recommendations), count(*) filter (where recommendation_model = ?) "
            "from mart_customer_360",
            [champion],
        ).fetchone()
        assert rows[0] == rows[1] == len(current)
        assert rows[2] > 0.5 * len(current), "most customers bought something: an RFM segment"
        assert rows[3] == rows[4] == len(current)
        top3 = con.execute(
            "select customer_id, top_recommendations from mart_customer_360 "
            "order by customer_id limit 5"
        ).fetchall()
        names = dict(
            con.execute("select product_id, product_name from staging.stg_products").fetchall()
        )
        mart_net = con.execute("select sum(net_revenue) from mart_sales_daily").fetchone()[0]
    for customer_id, listed in top3:
        mine = recs[recs["customer_id"] == customer_id].sort_values("rank")
        assert listed == " | ".join(names[p] for p in mine["product_id"].head(3))
    assert float(mart_net) == pytest.approx(float(gold_net), rel=1e-9)


# What the schedule and the sensors put on their runs.
REFRESH_TAGS = json.dumps(
    {"dagster/partition": refresh_request()["partition_key"], **refresh_request()["tags"]}
)


def _launch(job: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(
        [DAGSTER, "job", "execute", "-m", "orchestration.definitions", "-j", job]
        + ["--tags", REFRESH_TAGS],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _run_of(instance: dg.DagsterInstance, job: str, after: float) -> dg.DagsterRun | None:
    for record in instance.get_run_records(dg.RunsFilter(job_name=job), limit=5):
        if record.create_timestamp.timestamp() >= after:
            return record.dagster_run
    return None


def test_overlapping_nightly_and_streaming_runs_take_turns(demo_world: dict) -> None:
    env, settings = demo_world["env"], demo_world["settings"]
    root = Path(env["LAKEHOUSE_DATA_ROOT"])
    manifest = json.loads((settings.generated_dir / "manifest.json").read_text())
    last_days = dt.date.fromisoformat(manifest["scale"]["start"]) + dt.timedelta(days=FIRST_DAYS)
    cli_json("produce", "--start", last_days.isoformat(), env=env, timeout=300)
    ingest = subprocess.run(
        [DAGSTER, "job", "execute", "-m", "orchestration.definitions", "-j", "ingest_clickstream"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ingest.returncode == 0, ingest.stdout[-3000:] + ingest.stderr[-3000:]

    # both launched at once: the streaming refresh goes straight to silver.events, the nightly
    # part after the reference dims, so one of them finds the other holding the step's pool
    since = time.time()
    nightly = _launch("refresh_silver_gold", env, root / "nightly.log")
    streaming = _launch("streaming_refresh", env, root / "streaming.log")
    assert nightly.wait(timeout=900) == 0, (root / "nightly.log").read_text()[-3000:]
    assert streaming.wait(timeout=900) == 0, (root / "streaming.log").read_text()[-3000:]
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        runs = [
            _run_of(instance, job, since) for job in ("refresh_silver_gold", "streaming_refresh")
        ]
        blocked = [
            e.message
            for run in runs
            for e in instance.all_logs(run.run_id)
            if "blocked by limit for pool" in (e.message or "")
        ]
        print(f"\nwaited for a pool: {sorted(set(blocked))}")
        assert any("lake:silver.events" in m for m in blocked), "the runs did not overlap"
        for run in runs:
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS

    # consistent: each event once, nothing lost, the KPIs add up to silver
    bronze = _table(settings, "bronze.events", ["event_id", "event_date"])
    silver = _table(settings, "silver.events", ["event_id"])
    quarantine = _table(settings, "silver.events_quarantine", ["event_id"])
    assert len(silver) == len(pc.unique(silver["event_id"]))
    kept = set(silver["event_id"].to_pylist()) | set(quarantine["event_id"].to_pylist())
    assert set(bronze["event_id"].to_pylist()) <= kept
    assert max(bronze["event_date"].to_pylist()) >= last_days
    kpis = _table(settings, "gold.kpi_minute", ["events"])
    assert pc.sum(kpis["events"]).as_py() == len(silver)
    results = _table(settings, "quality.validation_results", ["success", "validated_at"])
    recent = results.filter(
        pc.greater_equal(results["validated_at"], dt.datetime.fromtimestamp(since, dt.UTC))
    )
    assert len(recent) > 0 and pc.all(recent["success"]).as_py()
