"""How far LightGBM's seed alone moves the learned ranker's NDCG@10: the noise every choice
made on the validation window has to beat.

    .venv/bin/python bench/ranker_seeds.py [--data-root data] [--seeds 0,1,2] [--windows 2]

Fits every model of the recommenders' chain as `recommender_evaluation` does (the training
cutoffs' statistics and candidates read from gold.customer_product_features and
gold.customer_product_candidates where they hold them), up to the validation start and up to
the start of each window before it (`--windows` in all), then fits the ranker's forest again
on the same training groups with each of `--seeds` (`LearnedRanker.reseeded`), and scores each
forest on the window after its fit over the active products, as gold.model_evaluations does.
The test window and the generator's held-out future are never looked at: this is a yardstick
for choices made on validation. The ranker learns from the purchase groups only (no answers to
shown lists), as the demo's training does. Seconds: for seed 0, the chain's fits of every
model and the scoring; for the others, the forest's fit and the scoring.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from pathlib import Path

import pandas as pd
from event_to_kpi_latency import positive

from lakehouse.core.settings import Settings, load_settings
from ml.evaluation import TASKS
from orchestration.defs.ml.resources import ml_resources
from spark_jobs.recommender_training import (
    AheadTables,
    load_catalogue,
    load_daily,
    recommender_span,
    split,
)
from spark_jobs.training import NotEnoughData, Tables, windows

K = 10


def seeds(text: str) -> list[int]:
    """`--seeds`: comma-separated integers."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one seed")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--seeds", type=seeds, default=[0, 1, 2])
    parser.add_argument("--windows", type=positive(int), default=2)
    args = parser.parse_args()
    settings = load_settings() if args.data_root is None else Settings(data_root=args.data_root)
    options = ml_resources(settings)["training"].options()
    tables = Tables(settings.lake)
    daily = load_daily(tables)
    if daily.empty:
        raise SystemExit(
            "gold.customer_product_daily is empty: run `./run demo` (or ingest and transform) first"
        )
    w = windows(options, *recommender_span(daily))
    catalogue = load_catalogue(tables)
    ahead = AheadTables(tables, options)
    days = pd.to_datetime(daily["interaction_date"])
    bought = daily[daily["purchases"] > 0]
    step = dt.timedelta(days=w.test_days)
    print(
        f"interactions {w.data_start}..{w.data_end}, {w.test_days}-day windows; "
        f"seeds {', '.join(map(str, args.seeds))}\n"
    )
    print("| window after | seed | trees | NDCG@10 all | NDCG@10 new | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for back in range(args.windows):
        start = w.validation_start - step * back
        inside = (days > pd.Timestamp(start)) & (days <= pd.Timestamp(start + step))
        truth = bought.loc[inside[bought.index], ["customer_id", "product_id"]]
        if truth.empty:
            print(f"(no purchases in the window after {start}: stopped)")
            break
        clock = time.monotonic()
        try:
            fitted = split(
                "validation", daily, start, truth, catalogue, options, w.test_days, None, ahead
            )
        except NotEnoughData as exc:
            print(f"(the window after {start}: {exc}; stopped)")
            break
        ranker = fitted.models["ranker"]
        fit_seconds = time.monotonic() - clock
        means = {task: [] for task in TASKS}
        for seed in args.seeds:
            clock = time.monotonic()
            model = ranker if seed == 0 else ranker.reseeded(seed)
            scores = {
                task: fitted.window.score(model, task, K, items=catalogue.active)[f"ndcg@{K}"]
                for task in TASKS
            }
            for task in TASKS:
                means[task].append(scores[task])
            seconds = time.monotonic() - clock + (fit_seconds if seed == 0 else 0.0)
            print(
                f"| {start} | {seed} | {model.rounds} | {scores['all']:.4f} | "
                f"{scores['new']:.4f} | {seconds:.0f} |",
                flush=True,
            )
        print(
            f"| {start} | mean (spread) | | {_summary(means['all'])} | {_summary(means['new'])} | |"
        )


def _summary(values: list[float]) -> str:
    spread = max(values) - min(values)
    return f"{statistics.fmean(values):.4f} ({spread:.4f})"


if __name__ == "__main__":
    main()
