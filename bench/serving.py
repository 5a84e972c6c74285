"""The recommendation API under load on loopback: latency at fixed request rates, granian vs
uvicorn, CPU per request, and POST /v1/events → next recommendation.

    .venv/bin/python bench/serving.py [--data-root data] [--servers granian,uvicorn]
        [--rates 250,500,1000,1500,2000] [--seconds 10] [--workers 2]

Reads the serving snapshot of an existing data root (default: the demo's; run `./run demo`
first), and starts its own broker, Redis and API on free ports under a temporary directory.
`--sessions` live sessions are written to Redis first (views and a cart each), and every
request names a customer and one of those sessions, so each answer re-ranks with a live
session. The load is open-loop: requests are sent on a fixed schedule whatever the answers do,
and each latency counts from the request's scheduled time (no coordinated omission), over
`--connections` keep-alive connections. The generator runs on the same 2 cores as the API.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import statistics
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import psutil
from common import free_port

from lakehouse.core.settings import Settings, load_settings
from lakehouse.devstack.services import ServiceManager, define_services
from lakehouse.devstack.stream import online_store
from serving.snapshot import load_snapshot

BROKER = ("broker", "broker-store")  # the embedded broker and its object store
LENGTH = re.compile(rb"(?i)content-length:\s*(\d+)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--servers", default="granian,uvicorn")
    parser.add_argument("--rates", default="250,500,1000,1500,2000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sessions", type=int, default=2_000)
    parser.add_argument("--probes", type=int, default=200)
    return parser.parse_args()


def seed_sessions(settings: Settings, customers: list[int], products: list[int], n: int) -> list:
    """`n` live sessions, each with three views and a cart; (customer, session) pairs."""
    store = online_store(settings)
    now = dt.datetime.now(dt.UTC)
    pairs, events = [], []
    for i in range(n):
        customer, session = customers[i % len(customers)], f"bench-{i}"
        pairs.append((customer, session))
        for j, kind in enumerate(("product_view", "product_view", "product_view", "add_to_cart")):
            events.append(
                {
                    "event_id": str(uuid.uuid4()),
                    "event_time": (now - dt.timedelta(seconds=60 - j)).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    ),
                    "event_type": kind,
                    "session_id": session,
                    "customer_id": customer,
                    "product_id": products[(7 * i + 13 * j) % len(products)],
                    "quantity": 1,
                    "price": 10.0,
                    "device": "desktop_web",
                    "schema_version": "1.0",
                }
            )
    for start in range(0, len(events), 5_000):
        store.apply(events[start : start + 5_000])
    store.close()
    return pairs


async def open_loop(
    port: int, paths: list[str], rate: float, seconds: float, connections: int
) -> tuple[list[float], int, float]:
    """(latencies in seconds, errors, achieved requests/s) of GETs sent at `rate`."""
    queue: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (item := await queue.get()) is not None:
            scheduled, path = item
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                match = LENGTH.search(head)
                await reader.readexactly(int(match[1]) if match else 0)
            except (asyncio.IncompleteReadError, ConnectionError):
                errors += 1
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            if head[9:12] != b"200":
                errors += 1
            latencies.append(time.perf_counter() - scheduled)
        writer.close()

    tasks = [asyncio.create_task(connection()) for _ in range(connections)]
    total = int(rate * seconds)
    started = time.perf_counter()
    for n in range(total):
        due = started + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, paths[n % len(paths)]))
    for _ in tasks:
        queue.put_nowait(None)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return latencies, errors, len(latencies) / elapsed


def cpu_seconds(pid: int) -> float:
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


def reflection(settings: Settings, pairs: list, products: list[int], probes: int) -> list[float]:
    """Milliseconds from POST /v1/events to a recommendation that reflects it (the POST and the
    next GET, sequentially)."""
    found = []
    for n in range(probes):
        customer, session = pairs[n % len(pairs)][0], f"probe-{uuid.uuid4().hex[:8]}"
        product = products[(31 * n) % len(products)]
        event = {
            "event_id": str(uuid.uuid4()),
            "event_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "event_type": "product_view",
            "session_id": session,
            "customer_id": customer,
            "product_id": product,
            "device": "desktop_web",
            "schema_version": "1.0",
        }
        started = time.perf_counter()
        post = urllib.request.Request(
            f"{settings.api_url}/v1/events", data=orjson.dumps(event), method="POST"
        )
        with urllib.request.urlopen(post, timeout=10) as response:  # noqa: S310 - loopback
            response.read()
        url = f"{settings.api_url}/v1/recommendations/{customer}?session_id={session}&k=10"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
            body = orjson.loads(response.read())
        if "session" not in body["strategy"]:
            raise SystemExit(f"the view of {product} was not reflected: {body['strategy']}")
        found.append((time.perf_counter() - started) * 1000)
    return found


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    args = parse_args()
    source = load_settings() if args.data_root is None else Settings(data_root=args.data_root)
    snapshot = load_snapshot(source.lake)
    customers = snapshot.lists.keys.tolist()
    products = sorted(snapshot.products)
    rows, reflections = [], {}
    for server in args.servers.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
            settings = Settings(
                data_root=Path(tmp),
                lake_uri=str(source.lake_uri),
                kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
                broker_store_url=f"http://127.0.0.1:{free_port()}",
                redis_port=free_port(),
                api_url=f"http://127.0.0.1:{free_port()}",
                api_server=server,
                api_workers=args.workers,
            )
            wanted = {"broker-store", "broker", "redis", "api"}
            services = [s for s in define_services(settings) if s.name in wanted]
            manager = ServiceManager(settings, services)
            manager.up(include=("api",))
            try:
                pairs = seed_sessions(settings, customers, products, args.sessions)
                paths = [f"/v1/recommendations/{c}?session_id={s}&k=10" for c, s in pairs]
                api = manager.running_process(manager.get("api"))
                assert api is not None
                # they share the two cores with the API
                broker_pids = [
                    p.pid
                    for p in map(manager.running_process, map(manager.get, BROKER))
                    if p is not None
                ]
                port = settings.api_endpoint[1]
                asyncio.run(open_loop(port, paths, 200, 3, 8))  # warm up
                for rate in [float(r) for r in args.rates.split(",")]:
                    before = cpu_seconds(api.pid)
                    broker_before = sum(cpu_seconds(pid) for pid in broker_pids)
                    clock = time.perf_counter()
                    latencies, errors, achieved = asyncio.run(
                        open_loop(port, paths, rate, args.seconds, args.connections)
                    )
                    cpu = cpu_seconds(api.pid) - before
                    broker_cpu = sum(cpu_seconds(pid) for pid in broker_pids) - broker_before
                    broker_share = broker_cpu / (time.perf_counter() - clock) * 100
                    rows.append(
                        {
                            "server": server,
                            "rate": rate,
                            "achieved": achieved,
                            "p50": pct(latencies, 0.50),
                            "p95": pct(latencies, 0.95),
                            "p99": pct(latencies, 0.99),
                            "errors": errors,
                            "cpu_ms": cpu / max(len(latencies), 1) * 1000,
                            "broker_cpu": broker_share,
                        }
                    )
                    print(rows[-1], flush=True)
                reflections[server] = reflection(settings, pairs, products, args.probes)
            finally:
                manager.down()

    print(
        f"\nGET /v1/recommendations/<customer>?session_id=<live session>&k=10, {args.workers} "
        f"workers, {args.seconds:.0f} s per rate, open loop over {args.connections} connections"
    )
    header = (
        f"{'server':<8} {'target/s':>9} {'achieved/s':>10} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'errors':>7} {'CPU ms/req':>10} {'broker CPU %':>12}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['server']:<8} {r['rate']:>9,.0f} {r['achieved']:>10,.0f} {r['p50']:>8.1f} "
            f"{r['p95']:>8.1f} {r['p99']:>8.1f} {r['errors']:>7} {r['cpu_ms']:>10.2f} "
            f"{r['broker_cpu']:>12.0f}"
        )
    print(f"\nPOST /v1/events then GET the next recommendation ({args.probes} probes, ms)")
    print(f"{'server':<8} {'p50':>8} {'p95':>8} {'p99':>8} {'median':>8}")
    for server, values in reflections.items():
        seconds = [v / 1000 for v in values]
        print(
            f"{server:<8} {pct(seconds, 0.5):>8.1f} {pct(seconds, 0.95):>8.1f} "
            f"{pct(seconds, 0.99):>8.1f} {statistics.median(values):>8.1f}"
        )


if __name__ == "__main__":
    main()
