"""What learning from the shown lists adds to the ranker, graded by the shoppers' true tastes.

    .venv/bin/python bench/feedback.py [--data-root data]

Needs a data root whose lake holds answered recommendation lists: `./run demo`, then
`lakehouse simulate-traffic --sessions 4000` (the simulated audience clicks and buys by its
latent tastes), `lakehouse ingest` and `lakehouse transform`. Runs the evaluation the nightly
training runs (ml.feedback.evaluate: the latest quarter of the answers held out, re-ordered as
served, by the ranker without feedback and with it debiased), adds the ranker trained on the
clicks at face value, and grades the held-out answers twice: by what the shoppers did (clicks
1, carts and purchases 2; what `gold.model_evaluations` stores) and by the audience's fit of
each product to the customer (generator/audience.py), the truth that clicks only sample
through a position bias. The audience is read to score, never to train.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from generator.audience import Audience
from generator.world import build_world
from lakehouse.core.settings import Settings, load_settings
from lakehouse.source_commands import generated_scale
from ml import feedback
from ml.ranker import LearnedRanker
from orchestration.defs.ml.resources import ml_resources
from spark_jobs.recommender_training import (
    load_catalogue,
    load_daily,
    load_feedback,
    recommender_span,
)
from spark_jobs.training import Tables, windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=None)
    args = parser.parse_args()
    settings = load_settings() if args.data_root is None else Settings(data_root=args.data_root)
    began = time.monotonic()
    tables = Tables(settings.lake)
    rows = load_feedback(tables)
    if rows is None:
        raise SystemExit(
            "no answered recommendation lists in gold.recommendation_exposures: run "
            "`lakehouse simulate-traffic`, `lakehouse ingest` and `lakehouse transform` first"
        )
    daily = load_daily(tables)
    w = windows(ml_resources(settings)["training"].options(), *recommender_span(daily))
    catalogue = load_catalogue(tables)
    audience = Audience(build_world(generated_scale(settings, None)))
    loaded = time.monotonic() - began
    scores = feedback.evaluate(
        LearnedRanker(catalogue.for_ranker, w.test_days),
        daily,
        rows,
        w.data_end,
        relevance=lambda customer, products: audience.fit(customer, products.tolist()),
        face_value=True,
    )
    first = scores["clicks"]["served"]
    print(
        f"{rows['request_id'].nunique():,} answers acted on ({len(rows):,} products shown); "
        f"{first['training_answers']:,.0f} learned from, the latest {first['answers']:,.0f} held "
        f"out; purchase groups up to {w.data_end} at most; loaded in {loaded:.0f} s, evaluated "
        f"in {time.monotonic() - began - loaded:.0f} s\n"
    )
    print("| model | NDCG@10 by clicks | NDCG@10 by the audience's fit |\n|---|---|---|")
    for model in scores["clicks"]:
        clicks, truth = scores["clicks"][model]["ndcg@10"], scores["truth"][model]["ndcg@10"]
        print(f"| {model} | {clicks:.4f} | {truth:.4f} |")


if __name__ == "__main__":
    main()
