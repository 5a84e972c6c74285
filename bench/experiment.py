"""An A/B experiment end to end, until it is decided: the champion against popularity, 50/50 by
session, simulated shoppers through a real API, their events through the lakehouse, the results
and decision through Dagster.

    .venv/bin/python bench/experiment.py [--data-root data] [--round-sessions 1000]
        [--max-rounds 8] [--rate 40]

Needs a built data root (`./run demo`) with its services up (`lakehouse services up`: broker,
Spark Connect, Redis). It starts an API of its own on a free port serving a new experiment
(`bench_<time>`, minimum 1,000 sessions per variant), then repeats rounds: `--round-sessions`
simulated sessions (`lakehouse simulate-traffic`), `lakehouse ingest`, `lakehouse transform`
and `lakehouse ml experiments --evaluate`, printing the experiment after each round, until it
is decided or `--max-rounds` have run. The sessions go to a topic of their own and then into the
data root's lake (today's partitions), like live traffic; the decision is recorded in its
registry under the bench experiment's name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import free_port, run_json

from generator.world import build_world
from lakehouse.core.settings import Settings, load_settings
from lakehouse.devstack.services import ServiceManager, define_services
from lakehouse.devstack.traffic import simulate_traffic
from lakehouse.source_commands import generated_scale

SPEC = """name: {name}
description: The champion (batch lists blended with the session) against bestsellers.
variants:
  - {{name: popularity, weight: 0.5, recommender: popularity}}
  - {{name: champion, weight: 0.5, recommender: champion}}
control: popularity
unit: session
primary_metric: conversion
guardrails: [revenue_per_unit]
minimum_sample: 1000
start: {start}
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--round-sessions", type=int, default=1000)
    parser.add_argument("--max-rounds", type=int, default=8)
    parser.add_argument("--rate", type=float, default=40.0, help="sessions started per second")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    source = load_settings() if args.data_root is None else Settings(data_root=args.data_root)
    name = f"bench_{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}"
    with tempfile.TemporaryDirectory(prefix="bench-experiment-") as tmp:
        folder = Path(tmp) / "experiments"
        folder.mkdir()
        start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        (folder / f"{name}.yaml").write_text(SPEC.format(name=name, start=start.isoformat()))
        topic = f"bench-experiment-{uuid.uuid4().hex[:8]}"
        api_url = f"http://127.0.0.1:{free_port()}"
        # the bench's API keeps its pid file and logs under its own root (the data root's are
        # the demo API's), and reads the data root's lake
        settings = source.model_copy(
            update={
                "data_root": Path(tmp) / "api",
                "events_topic": topic,
                "api_url": api_url,
                "experiments_dir": folder,
            }
        )
        env = {
            **os.environ,
            "LAKEHOUSE_DATA_ROOT": str(source.data_root),
            "KAFKA_EVENTS_TOPIC": topic,
            "EXPERIMENTS_DIR": str(folder),
            "API_URL": api_url,
        }
        world = build_world(generated_scale(source, None))
        api = ServiceManager(settings, [s for s in define_services(settings) if s.name == "api"])
        began = time.monotonic()
        rows = []
        try:
            api.up(include=("api",))
            for round_ in range(1, args.max_rounds + 1):
                traffic = simulate_traffic(
                    api_url,
                    world,
                    args.rate,
                    duration=10 * args.round_sessions / args.rate,
                    sessions=args.round_sessions,
                    seed=round_,
                )
                if traffic.failed_sessions:
                    raise SystemExit(f"{traffic.failed_sessions} sessions failed: {traffic.errors}")
                api.down()  # flushes the impressions; up again for the next round
                run_json(["ingest"], env)
                run_json(["transform"], env)
                report = run_json(["ml", "experiments", "--evaluate"], env)[name]
                rows.append((round_, time.monotonic() - began, report))
                print_round(*rows[-1])
                if report["status"] != "running":
                    break
                api.up(include=("api",))
        finally:
            api.down()
    print_summary(rows)


def print_round(round_: int, seconds: float, report: dict) -> None:
    variants = {v["variant"]: v for v in report["variants"]}
    champion, popular = variants["champion"], variants["popularity"]
    print(
        f"round {round_} at {seconds:5.0f} s: units {popular['units']:,} / {champion['units']:,}; "
        f"conversion {popular['conversion']:.4f} vs {champion['conversion']:.4f} "
        f"(diff {champion['difference']:+.4f}, interval {champion['ci_low']:+.4f} .. "
        f"{champion['ci_high']:+.4f}); p {champion['p_value']:.3g}, always-valid p "
        f"{champion['always_valid_p']:.3g}; SRM p {champion['srm_p']:.3g}; {report['status']}",
        flush=True,
    )


def print_summary(rows: list) -> None:
    if not rows:
        return
    round_, seconds, report = rows[-1]
    print()
    print("| variant | units | exposures | CTR | conversion | revenue/unit | difference | "
          "interval | p | always-valid p |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for v in report["variants"]:
        control = v["is_control"]
        comparison = (
            ["", "", "", ""]
            if control
            else [
                f"{v['difference']:+.4f}",
                f"{v['ci_low']:+.4f} .. {v['ci_high']:+.4f}",
                f"{v['p_value']:.3g}",
                f"{v['always_valid_p']:.3g}",
            ]
        )
        cells = [
            v["variant"] + (" (control)" if control else ""),
            f"{v['units']:,}",
            f"{v['exposures']:,}",
            f"{v['ctr']:.4f}",
            f"{v['conversion']:.4f}",
            f"{v['revenue_per_unit']:,.1f}",
            *comparison,
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    print(f"{report['status']} after {round_} rounds, {seconds:.0f} s: {report['reason']}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
