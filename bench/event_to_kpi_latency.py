"""End-to-end latency of the real-time KPIs: clickstream events on Kafka → `gold.kpi_minute`.

    .venv/bin/python bench/event_to_kpi_latency.py [--rounds 3] [--events 500] [--timeout 600]
    .venv/bin/python bench/event_to_kpi_latency.py --rounds 2 --json

Needs a built data root (`./run demo`); it makes sure the embedded services and the Dagster UI
(with its daemon) are up through the CLI, and triggers nothing itself. Each round produces
`--events` contract events (sessions of real current customers and products from the gold
dimensions, stamped with the current UTC time) to the events topic with the project's
producer, then polls `gold.kpi_minute` every second until the minutes they are stamped with
count that many more events. In between, the daemon's `clickstream_sensor` (every 30 s) starts
an `ingest_clickstream` run and `streaming_refresh_sensor` follows its success with
`streaming_refresh` (silver events → KPI tables → live file). The breakdown comes from the
Dagster instance's run records and the bronze.events commit log; every figure is in seconds
from the moment the producer had all events acknowledged. Rounds start once no ingestion or
refresh run is active.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import pyarrow as pa
from common import run_json
from deltalake import DeltaTable, QueryBuilder

from lakehouse.core.lake import open_table
from lakehouse.core.settings import Settings, load_settings
from streaming.contract import DEVICES, SCHEMA_VERSION, validate_event
from streaming.producer import produce

INGEST, REFRESH = "ingest_clickstream", "streaming_refresh"
ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
# One visit: event type and which of the session's two products it is about.
SESSION = (
    ("page_view", None),
    ("search", 0),
    ("product_view", 0),
    ("product_view", 1),
    ("add_to_cart", 1),
)
ANONYMOUS = 0.2  # share of sessions without a customer_id
SAMPLE = 1_000  # customers and products to draw from


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in "invalid int value"
    return parse


def query(table: DeltaTable, sql: str) -> pa.Table:
    """Run SQL over one Delta table registered as `t` (delta-rs, bounded by the query)."""
    return pa.table(QueryBuilder().register("t", table).execute(sql).read_all())


def master_data(settings: Settings) -> tuple[list[dict], list[dict]]:
    """A random sample of current, active customers and products (a few columns only); exits
    with a hint when gold is not built."""
    options = settings.lake.storage_options
    tables = {
        name: open_table(settings.lake.table_uri(f"gold.{name}"), options)
        for name in ("dim_customer", "dim_product", "kpi_minute")
    }
    missing = [name for name, table in tables.items() if table is None]
    if missing:
        raise SystemExit(f"gold.{', gold.'.join(missing)} not built: run ./run demo first")
    customers = query(
        tables["dim_customer"],
        "SELECT customer_id, city_name FROM t WHERE is_current AND status = 'Active' "
        f"ORDER BY random() LIMIT {SAMPLE}",
    ).to_pylist()
    products = query(
        tables["dim_product"],
        "SELECT product_id, brand_name, category_name, subcategory_name, "
        "CAST(list_price AS DOUBLE) AS price FROM t WHERE is_current AND is_active "
        f"ORDER BY random() LIMIT {SAMPLE}",
    ).to_pylist()
    if not customers or not products:
        raise SystemExit("gold.dim_customer/dim_product hold no current rows: run ./run demo first")
    return customers, products


def clickstream(
    customers: list[dict], products: list[dict], n: int
) -> Iterator[tuple[bytes, dict, int]]:
    """(key, event, event_time ms) for `n` events in sessions of SESSION, in the generator's
    record format (generator/events.py), each stamped with the clock when it is produced."""
    for i in range(n):
        event_type, browsed = SESSION[i % len(SESSION)]
        if i % len(SESSION) == 0:
            session = str(uuid.uuid4())
            customer = random.choice(customers)
            customer_id = customer["customer_id"] if random.random() >= ANONYMOUS else None
            device = random.choice(DEVICES)
            picked = random.sample(products, 2)
        now_ms = time.time_ns() // 1_000_000
        stamp = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
        event = {
            "event_id": str(uuid.uuid4()),
            "event_time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event_type": event_type,
            "session_id": session,
            "customer_id": customer_id,
        }
        product = picked[browsed or 0]
        if event_type == "search":
            event["search_query"] = product["subcategory_name"].lower()
        elif browsed is not None:
            event["product_id"] = product["product_id"]
            event["category_path"] = f"{product['category_name']} > {product['subcategory_name']}"
            event["brand"] = product["brand_name"]
            event["price"] = round(product["price"], 2)
        if event_type == "add_to_cart":
            event["quantity"] = 1
        event |= {"device": device, "city": customer["city_name"], "schema_version": SCHEMA_VERSION}
        if (reason := validate_event(event)) is not None:
            raise AssertionError(f"bench event breaks the contract: {reason}")
        yield session.encode(), event, now_ms


def minute_counts(table: DeltaTable, dates: set[dt.date]) -> dict[dt.datetime, int]:
    """events per period_start in gold.kpi_minute's partitions of `dates` (≤ 1,440 rows a day)."""
    table.update_incremental()
    days = ", ".join(f"DATE '{d}'" for d in sorted(dates))
    rows = query(table, f"SELECT period_start, events FROM t WHERE event_date IN ({days})")
    return dict(zip(rows["period_start"].to_pylist(), rows["events"].to_pylist(), strict=True))


def run_records(instance: dg.DagsterInstance, job: str, after: float, **kw: Any) -> list:
    created_after = dt.datetime.fromtimestamp(after, dt.UTC)
    return instance.get_run_records(
        dg.RunsFilter(job_name=job, created_after=created_after, **kw), ascending=True
    )


def wait_idle(instance: dg.DagsterInstance, timeout: float) -> None:
    """Until no ingestion or streaming refresh is queued or running."""
    deadline = time.monotonic() + timeout
    while any(
        instance.get_run_records(dg.RunsFilter(job_name=job, statuses=ACTIVE), limit=1)
        for job in (INGEST, REFRESH)
    ):
        if time.monotonic() > deadline:
            raise SystemExit(f"{INGEST}/{REFRESH} runs still active after {timeout:.0f}s")
        time.sleep(1)


def span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 1)


def run_round(
    settings: Settings,
    instance: dg.DagsterInstance,
    pool: tuple[list[dict], list[dict]],
    n: int,
    timeout: float,
) -> dict[str, float | None]:
    """Produce `n` events and wait until gold.kpi_minute counts them; the round's figures."""
    options = settings.lake.storage_options
    kpi = DeltaTable(settings.lake.table_uri("gold.kpi_minute"), storage_options=options)
    bronze = DeltaTable(settings.lake.table_uri("bronze.events"), storage_options=options)
    bronze_version = bronze.version()
    now = dt.datetime.now(dt.UTC)
    before = minute_counts(kpi, {now.date(), (now + dt.timedelta(minutes=1)).date()})

    started = time.time()
    report = produce(settings.kafka_bootstrap_servers, settings.events_topic, clickstream(*pool, n))
    produced = time.time()
    first, last = (
        dt.datetime.fromisoformat(t).replace(second=0, microsecond=0)
        for t in (report.first_event_time, report.last_event_time)
    )
    steps = int((last - first).total_seconds()) // 60
    minutes = {first + dt.timedelta(minutes=k) for k in range(steps + 1)}
    base = sum(before.get(m, 0) for m in minutes)
    while True:
        counts = minute_counts(kpi, {m.date() for m in minutes})
        arrived = sum(counts.get(m, 0) for m in minutes) - base
        if arrived >= n:
            visible = time.time()
            break
        if time.time() - produced > timeout:
            runs = [
                f"{r.dagster_run.job_name} {r.dagster_run.status.value}"
                for job in (INGEST, REFRESH)
                for r in run_records(instance, job, started)
            ]
            raise SystemExit(
                f"only {arrived}/{n} events in gold.kpi_minute after {timeout:.0f}s; runs since "
                f"producing: {', '.join(runs) or 'none (are the Dagster sensors running?)'}"
            )
        time.sleep(1)

    wait_idle(instance, timeout)  # the refresh goes on to the live file after the KPI tables
    ingests = run_records(instance, INGEST, started, statuses=[dg.DagsterRunStatus.SUCCESS])
    ingest = ingests[0] if ingests else None
    refreshes = run_records(instance, REFRESH, ingest.end_time) if ingest else []
    refresh = refreshes[0] if refreshes else None
    bronze.update_incremental()
    new_commits = bronze.version() - bronze_version
    commits = [h["timestamp"] / 1000 for h in bronze.history(new_commits)] if new_commits else []
    return {
        "total_s": span(produced, visible),
        "produce_s": round(produced - started, 2),
        "sensor_fired_s": span(produced, ingest and ingest.create_timestamp.timestamp()),
        "ingest_start_s": span(produced, ingest and ingest.start_time),
        "bronze_commit_s": span(produced, min(commits, default=None)),
        "ingest_run_s": span(ingest and ingest.start_time, ingest and ingest.end_time),
        "refresh_start_s": span(produced, refresh and refresh.start_time),
        "refresh_run_s": span(refresh and refresh.start_time, refresh and refresh.end_time),
    }


COLUMNS = {  # figure: (heading, width)
    "total_s": ("total", 7),
    "sensor_fired_s": ("sensor fired", 12),
    "ingest_start_s": ("ingest start", 12),
    "bronze_commit_s": ("in bronze", 9),
    "ingest_run_s": ("ingest run", 10),
    "refresh_start_s": ("refresh start", 13),
    "refresh_run_s": ("refresh run", 11),
}


def cell(value: float | None, width: int) -> str:
    return f"{'-' if value is None else f'{value:.1f}':>{width}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive(int), default=3)
    parser.add_argument("--events", type=positive(int), default=500, help="events per round")
    parser.add_argument("--timeout", type=positive(float), default=600.0, help="seconds per round")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    say = (lambda s: print(s, file=sys.stderr)) if args.json else print
    settings = load_settings()
    env = dict(os.environ)

    pool = master_data(settings)
    run_json(["services", "up"], env)
    run_json(["dagster", "up"], env)
    say(
        f"services and Dagster up; {len(pool[0])} customers, {len(pool[1])} products sampled; "
        f"{args.events} events a round to {settings.events_topic}"
    )
    rounds = []
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        for number in range(1, args.rounds + 1):
            wait_idle(instance, args.timeout)
            figures = run_round(settings, instance, pool, args.events, args.timeout)
            rounds.append(figures)
            say(
                f"round {number}: in gold.kpi_minute {figures['total_s']:.1f}s after producing "
                f"(ingest run started at {cell(figures['ingest_start_s'], 0).strip()}s, "
                f"refresh at {cell(figures['refresh_start_s'], 0).strip()}s)"
            )
    median = round(statistics.median(r["total_s"] for r in rounds), 1)
    if args.json:
        print(json.dumps({"events": args.events, "rounds": rounds, "median_total_s": median}))
        return
    print(
        "\nseconds after the producer had every event acknowledged "
        "('ingest run' and 'refresh run' are the runs' durations)"
    )
    print(f"{'round':>5}  " + "  ".join(f"{h:>{w}}" for h, w in COLUMNS.values()))
    for number, figures in enumerate(rounds, start=1):
        print(f"{number:>5}  " + "  ".join(cell(figures[k], w) for k, (_, w) in COLUMNS.items()))
    print(f"median total: {median:.1f}s over {len(rounds)} rounds of {args.events} events")


if __name__ == "__main__":
    main()
