"""How far behind the clock the Real-time dashboard's live charts are: a purchase on Kafka → the
stream processor → the online store → the stream file → a Superset query.

    .venv/bin/python bench/event_to_dashboard_latency.py [--rounds 10] [--timeout 30] [--json]

Needs `./run demo` left running (the broker, Redis, the stream processor and Superset; the live
clickstream may run beside it). Each round produces one contract purchase event, stamped with
the clock, with an order id of its own, then polls every 50 ms, at the same time:

- the online store (the event's dedupe key in Redis: the stream processor applied it),
- the stream file itself (DuckDB, read-only: what Superset's connection opens), and
- Superset, through SQL Lab on the "Stream" database (the datasets are never cached),

until the order is in `stream_orders`. Figures are seconds from the broker's acknowledgement.
A viewer of the dashboard sees data at most this old plus its refresh interval (5 s).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import duckdb
import redis
import requests
from event_to_kpi_latency import clickstream, master_data, positive

from lakehouse.core.settings import load_settings
from streaming.contract import validate_event
from streaming.producer import produce
from warehouse.stream_kpis import stream_path
from warehouse.superset.admin import SupersetConfig, secrets_of
from warehouse.superset.bundle import DATABASES

POLL = 0.05
STAGES = {
    "redis": "the online store",
    "file": "the stream file",
    "superset": "Superset (SQL Lab)",
}


def superset_session(config: SupersetConfig) -> requests.Session:
    _, credentials = secrets_of(config)
    session = requests.Session()
    login = session.post(
        f"{config.url}/api/v1/security/login",
        json={"username": credentials.username, "password": credentials.password, "provider": "db"},
        timeout=30,
    )
    if login.status_code != 200:
        raise SystemExit(f"cannot log in to Superset at {config.url}: run ./run demo first")
    session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    csrf = session.get(f"{config.url}/api/v1/security/csrf_token/", timeout=30).json()["result"]
    session.headers.update({"X-CSRFToken": csrf, "Referer": config.url})
    return session


def stream_database_id(session: requests.Session, url: str) -> int:
    databases = session.get(f"{url}/api/v1/database/", timeout=30).json()["result"]
    for database in databases:
        if database["database_name"] == DATABASES["stream"]:
            return database["id"]
    raise SystemExit("Superset has no Stream database: run `lakehouse bi up`")


def purchase(pool: tuple[list[dict], list[dict]], order_id: int) -> tuple[bytes, dict]:
    """A purchase of the add-to-cart product of one bench session, stamped now."""
    key, event, _ = [e for e in clickstream(*pool, 5) if e[1]["event_type"] == "add_to_cart"][0]
    customer = event["customer_id"] or random.choice(pool[0])["customer_id"]  # no anonymous buyers
    event |= {
        "event_type": "purchase",
        "order_id": order_id,
        "quantity": 1,
        "customer_id": customer,
    }
    if (reason := validate_event(event)) is not None:
        raise AssertionError(f"bench event breaks the contract: {reason}")
    return key, event


def run_round(settings, url, session, database_id, pool, timeout: float) -> dict:  # noqa: ANN001
    order_id = random.randrange(10**15, 10**16)
    key, event = purchase(pool, order_id)
    store = redis.Redis.from_url(settings.online_store_url)
    produce(settings.kafka_bootstrap_servers, settings.events_topic, iter([(key, event, 0)]))
    acked = time.monotonic()
    sql = f"SELECT count(*) AS n FROM stream_orders WHERE order_id = '{order_id}'"
    in_redis = in_file = in_superset = None
    while time.monotonic() - acked < timeout and None in (in_redis, in_file, in_superset):
        if in_redis is None and store.exists(f"ev:{event['event_id']}"):
            in_redis = time.monotonic() - acked
        if in_file is None:
            with duckdb.connect(str(stream_path(settings.warehouse_path)), read_only=True) as con:
                if con.execute(sql).fetchone()[0]:
                    in_file = time.monotonic() - acked
        if in_superset is None:
            answer = session.post(
                f"{url}/api/v1/sqllab/execute/",
                json={"database_id": database_id, "sql": sql, "runAsync": False, "schema": "main"},
                timeout=30,
            )
            answer.raise_for_status()
            if answer.json()["data"][0]["n"]:
                in_superset = time.monotonic() - acked
        time.sleep(POLL)
    store.close()
    return {"redis": in_redis, "file": in_file, "superset": in_superset}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=positive(int), default=10)
    parser.add_argument("--timeout", type=positive(float), default=30.0, help="seconds a round")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    settings = load_settings()
    if not stream_path(settings.warehouse_path).exists():
        raise SystemExit(
            "no stream file: start the processor (`lakehouse services up --with stream`)"
        )
    config = SupersetConfig.from_settings(settings)
    session = superset_session(config)
    database_id = stream_database_id(session, config.url)
    pool = master_data(settings)
    rounds = []
    for _ in range(args.rounds):
        rounds.append(run_round(settings, config.url, session, database_id, pool, args.timeout))
        time.sleep(random.uniform(0.5, 2.5))  # land anywhere in the publishing cycle
    summary = {}
    for name in STAGES:
        seen = sorted(r[name] for r in rounds if r[name] is not None)
        summary[name] = {
            "seen": len(seen),
            "median": round(statistics.median(seen), 2) if seen else None,
            "p95": round(seen[min(len(seen) - 1, int(0.95 * len(seen)))], 2) if seen else None,
            "max": round(seen[-1], 2) if seen else None,
        }
    report = {
        "rounds": args.rounds,
        "stream_kpi_seconds": settings.stream_kpi_seconds,
        "summary": summary,
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"{args.rounds} rounds, stream file published every {settings.stream_kpi_seconds:g} s")
    print(f"{'acknowledged → visible in':<28}{'seen':>6}{'median s':>10}{'p95 s':>8}{'max s':>8}")
    for name, label in STAGES.items():
        s = summary[name]
        row = [f"{s['seen']}/{args.rounds}", s["median"], s["p95"], s["max"]]
        print(
            f"{label:<28}"
            + "".join(f"{str(v):>{w}}" for v, w in zip(row, (6, 10, 8, 8), strict=True))
        )


if __name__ == "__main__":
    main()
