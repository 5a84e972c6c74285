"""Superset start-up and dashboard page-load times on the demo warehouse.

    .venv/bin/python bench/superset_pages.py [--runs 3]

Needs a built demo (`./run demo`): it uses that data root's warehouse and Superset. It stops
the embedded Superset, times `lakehouse bi up` (migrations, bundle, web server; `superset init`
only runs the first time), then opens every dashboard in Chromium: once on a cold cache, then
`--runs` more times, and prints the cold time and the median of the warm ones. A page counts
as loaded when every chart has finished loading.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from common import run_json

from lakehouse.core.settings import load_settings
from warehouse.superset.admin import SupersetConfig, secrets_of
from warehouse.superset.browser import chart_states, logged_in, open_dashboard
from warehouse.superset.bundle import DATABASES, render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm loads per dashboard")
    args = parser.parse_args()
    settings = load_settings()
    env = dict(os.environ)

    run_json(["bi", "down"], env)
    started = time.monotonic()
    report = run_json(["bi", "up"], env)
    print(f"bi up (Superset already installed and initialised): {time.monotonic() - started:.1f}s")
    for step, seconds in report["steps"].items():
        print(f"  {step}: {seconds:.1f}s")

    _, credentials = secrets_of(SupersetConfig.from_settings(settings))
    slugs = [d["slug"] for d in render(dict.fromkeys(DATABASES, "")).dashboards]
    print(f"\n{'dashboard':<20} {'charts':>6} {'cold s':>7} {'warm median s':>14}")
    with logged_in(settings.superset_url, credentials.username, credentials.password) as p:
        for slug in slugs:
            cold = open_dashboard(p, settings.superset_url, slug)
            charts = chart_states(p)
            warm = [open_dashboard(p, settings.superset_url, slug) for _ in range(args.runs)]
            bad = sorted(t for t, state in charts.items() if state == "error")
            note = f"  errors: {bad}" if bad else ""
            print(
                f"{slug:<20} {len(charts):>6} {cold:>7.2f} {statistics.median(warm):>14.2f}{note}"
            )


if __name__ == "__main__":
    main()
