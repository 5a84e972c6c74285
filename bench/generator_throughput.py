"""Generator throughput and memory: `lakehouse generate` (ERP + event files) and
`lakehouse produce` (to the embedded broker), per preset size.

    .venv/bin/python bench/generator_throughput.py                 # demo (~1 M) and medium (~10 M)
    .venv/bin/python bench/generator_throughput.py --sizes demo --repeat 5

Each run is a fresh CLI process on its own data root and topic; the embedded broker runs on free
ports for the duration. Prints medians over the repeats (the machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import uuid
from pathlib import Path

from common import free_port, run_json

from lakehouse.core.settings import Settings
from lakehouse.devstack.services import STORE_PORTS, ServiceManager, free_port_block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="demo,medium", help="comma-separated presets")
    parser.add_argument(
        "--repeat", type=int, default=0, help="runs per size (default: 3 up to ~1 M events, else 1)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        root = Path(tmp)
        kafka = f"127.0.0.1:{free_port()}"
        base_env = {
            "PATH": "/usr/bin:/bin",
            "LAKEHOUSE_DATA_ROOT": str(root / "services"),
            "KAFKA_BOOTSTRAP_SERVERS": kafka,
            "SPARK_REMOTE": f"sc://127.0.0.1:{free_port()}",
            "LAKEHOUSE_BROKER_STORE_URL": f"http://127.0.0.1:{free_port_block(STORE_PORTS)}",
            "LAKEHOUSE_REDIS_PORT": str(free_port()),
        }
        manager = ServiceManager(
            Settings(
                data_root=root / "services",
                kafka_bootstrap_servers=kafka,
                spark_remote=base_env["SPARK_REMOTE"],
                broker_store_url=base_env["LAKEHOUSE_BROKER_STORE_URL"],
                redis_port=int(base_env["LAKEHOUSE_REDIS_PORT"]),
            )
        )
        manager.up()
        rows = []
        try:
            for size in args.sizes.split(","):
                repeat = args.repeat or (3 if size in ("tiny", "demo") else 1)
                gen, prod = [], []
                for i in range(repeat):
                    env = base_env | {"LAKEHOUSE_DATA_ROOT": str(root / f"{size}-{i}")}
                    gen.append(run_json(["generate", "--preset", size], env))
                    prod.append(
                        run_json(
                            [
                                "produce",
                                "--preset",
                                size,
                                "--topic",
                                f"bench-{uuid.uuid4().hex[:8]}",
                            ],
                            env,
                        )
                    )
                    print(
                        f"{size} run {i + 1}/{repeat}: generate "
                        f"{gen[-1]['events_per_second']:,.0f} ev/s, produce "
                        f"{prod[-1]['events_per_second']:,.0f} msgs/s",
                        flush=True,
                    )
                broker_rss = next(s.rss_mb for s in manager.status() if s.name == "broker")
                rows.append((size, gen, prod, broker_rss))
        finally:
            manager.down()

    print()
    print(
        f"{'size':<8} {'events':>11} {'generate s':>10} {'gen ev/s':>10} {'gen RSS MB':>10} "
        f"{'produce s':>9} {'prod msg/s':>10} {'prod RSS MB':>11} {'broker RSS MB':>13}"
    )
    for size, gen, prod, broker_rss in rows:

        def med(runs: list[dict], key: str) -> float:
            return statistics.median(r[key] for r in runs)

        print(
            f"{size:<8} {gen[0]['events_written']:>11,} {med(gen, 'seconds'):>10.1f} "
            f"{med(gen, 'events_per_second'):>10,.0f} {max(r['peak_rss_mb'] for r in gen):>10.0f} "
            f"{med(prod, 'seconds'):>9.1f} {med(prod, 'events_per_second'):>10,.0f} "
            f"{max(r['peak_rss_mb'] for r in prod):>11.0f} {broker_rss:>13.0f}"
        )
    print(
        "\ngenerate = ERP database (SQLite) + gzip'd JSON-lines event files + ground truth;"
        "\nproduce = simulate + serialise + send to the embedded broker (idempotent, lz4)."
    )


if __name__ == "__main__":
    main()
