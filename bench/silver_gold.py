"""Bronze → silver → gold on Spark Connect (Sail): wall time and peak RSS of every process.

    .venv/bin/python bench/silver_gold.py                    # medium preset, ~10 M events
    .venv/bin/python bench/silver_gold.py --preset demo      # ~1 M events, a quick look

In a fresh data root with its own embedded services: generate the ERP database, produce the
clickstream (with duplicates, late, malformed, orphan and future events), ingest it into bronze
and extract the ERP; then `lakehouse transform` builds silver and gold from scratch (the
measured part), and a second `lakehouse transform` shows the cost of a run with nothing new.
Peak RSS is sampled every 0.2 s for the client process and the Sail server process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil
from common import CLI, free_port, run_json

from lakehouse.core.settings import Settings
from lakehouse.devstack.services import ServiceManager


class PeakRss(threading.Thread):
    """Samples the resident memory of a process (and its children) until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.2)

    def stop(self) -> float:
        self.running = False
        return self.peak / 2**20


def timed(
    args: list[str], env: dict[str, str], server: int
) -> tuple[dict | list, float, float, float]:
    """Run `lakehouse <args> --json`: (report, seconds, client peak MB, server peak MB)."""
    server_rss = PeakRss(server)
    server_rss.start()
    started = time.monotonic()
    proc = subprocess.Popen([CLI, *args, "--json"], env=env, stdout=subprocess.PIPE, text=True)
    client_rss = PeakRss(proc.pid)
    client_rss.start()
    stdout, _ = proc.communicate()
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"lakehouse {' '.join(args)} exited {proc.returncode}")
    return json.loads(stdout), seconds, client_rss.stop(), server_rss.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--keep", action="store_true", help="Keep the data root.")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-silver-gold-"))
    env = os.environ | {
        "LAKEHOUSE_DATA_ROOT": str(root),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "SPARK_REMOTE": f"sc://127.0.0.1:{free_port()}",
        "LAKEHOUSE_BROKER_STORE_URL": f"http://127.0.0.1:{free_port()}",
        "LAKEHOUSE_REDIS_PORT": str(free_port()),
    }
    settings = Settings(
        data_root=root,
        kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        spark_remote=env["SPARK_REMOTE"],
        broker_store_url=env["LAKEHOUSE_BROKER_STORE_URL"],
        redis_port=int(env["LAKEHOUSE_REDIS_PORT"]),
    )
    manager = ServiceManager(settings)
    manager.up()
    try:
        t = time.monotonic()
        run_json(["generate", "--preset", args.preset, "--no-events"], env)
        print(f"generate ERP: {time.monotonic() - t:.0f} s")
        faults = ["--duplicates", "0.01", "--late", "0.01", "--malformed", "0.002"]
        faults += ["--orphans", "0.001", "--future", "0.001", "--negative-quantities", "0.001"]
        produced = run_json(["produce", "--preset", args.preset, *faults], env)
        print(f"produce: {produced['messages']:,} messages in {produced['seconds']:.0f} s")
        ingested = run_json(["ingest"], env)
        print(f"ingest: {ingested['events_written']:,} events in {ingested['seconds']:.0f} s")
        run_json(["extract"], env)
        sail = manager.running_process(manager.get("spark"))
        first, seconds, client, server = timed(["transform"], env, sail.pid)
        print(f"\ntransform (bronze → gold, from scratch): {seconds:.0f} s wall")
        print(f"  peak RSS: client {client:,.0f} MB, Sail server {server:,.0f} MB")
        for r in first:
            print(f"  {r['table']:<38} {r['rows']:>11,} rows {r['seconds']:>7.1f} s")
        _, again, client2, server2 = timed(["transform"], env, sail.pid)
        print(f"transform again, nothing new: {again:.1f} s (client {client2:,.0f} MB)")
    finally:
        manager.down()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    main()
