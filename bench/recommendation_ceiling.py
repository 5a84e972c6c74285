"""How close the published lists come to the best any recommender could do on a generated world.

    .venv/bin/python bench/recommendation_ceiling.py [--data-root data] [--replicas 100,400]

Needs a data root made by `lakehouse generate` (the demo's): its manifest names the world and
its `ground_truth/future_purchases.parquet` holds the purchases of the days after the window.

A model only sees what customers did. The generator knows more: each customer's tastes, their
restock timers, the day's randomness. This script replays the generator's own simulation of the
held-out future many times (`--replicas`), each time from the exact state at the end of the
window but with other random draws, and ranks each customer's products by the share of replicas
in which the customer bought them: by each product's probability of being bought, the order
that maximises the expected DCG (and, up to NDCG's normaliser, its NDCG). The figure is a lower
bound of that best, rising with the replicas as their sampling noise falls; a model reading
the lake knows less than the generator's state, so it cannot expect more. It is printed
next to the published champion's figures and the baselines from `gold.model_evaluations`
(the newest `recommendation` run), for both tasks (`all`, `new`).

This reads the generator's latent state on purpose: it is a yardstick for the targets, never
an input of a model.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from generator.generate import GROUND_TRUTH_DAYS
from generator.simulate import DayBatch, Simulation
from generator.world import build_world
from lakehouse.core.settings import Settings, load_settings
from lakehouse.source_commands import generated_scale
from ml.evaluation import ndcg_at_k

K = 10
MODELS = ("buy_again", "popularity_28d")  # shown next to the champion


def sold_pairs(batch: DayBatch) -> set[tuple[int, int]]:
    """(customer_id, product_id) of the day's sales, with the ids the lake uses (index + 1)."""
    invoices, lines = batch.invoices, batch.lines
    sale = invoices["type"] == "Sale"
    customer = dict(
        zip(invoices["invoice_id"][sale].tolist(), invoices["customer"][sale].tolist(), strict=True)
    )
    return {
        (customer[invoice] + 1, product + 1)
        for invoice, product in zip(
            lines["invoice"].tolist(), lines["product"].tolist(), strict=True
        )
        if invoice in customer
    }


def ceiling(
    counts: Counter, truth: dict[int, set[int]], bought_before: set[tuple[int, int]], task: str
) -> float:
    """NDCG@K over the buyers of `truth` when each customer's products are ranked by `counts`
    (`new`: products the customer bought before are neither ranked nor relevant)."""
    frame = pd.DataFrame(
        [(c, p, n) for (c, p), n in counts.items()], columns=["customer_id", "product_id", "n"]
    )
    if task == "new":
        before = pd.MultiIndex.from_tuples(list(bought_before))
        frame = frame[~pd.MultiIndex.from_frame(frame[["customer_id", "product_id"]]).isin(before)]
    frame = frame.sort_values(["customer_id", "n"], ascending=[True, False])
    lists = frame.groupby("customer_id").head(K).groupby("customer_id")["product_id"].agg(list)
    scores = []
    for customer, products in truth.items():
        relevant = products
        if task == "new":
            relevant = {p for p in products if (customer, p) not in bought_before}
        if relevant:
            scores.append(ndcg_at_k(lists.get(customer, []), relevant, K))
    return float(np.mean(scores))


def published(settings: Settings) -> dict[str, dict[str, float]]:
    """model -> task -> NDCG@K on the future, of the newest recommendation run (champion first,
    named `<model> (champion)`); empty without such a run."""
    table = settings.lake.open("gold.model_evaluations")
    if table is None:
        return {}
    rows = table.to_pandas()
    rows = rows[(rows["task"] == "recommendation") & (rows["split"] == "future")]
    rows = rows[(rows["population"] == "buyers") & (rows["metric"] == f"ndcg@{K}")]
    if rows.empty:
        return {}
    rows = rows[rows["evaluated_at"] == rows["evaluated_at"].max()]
    champion = rows.loc[rows["is_champion"], "model"].iloc[0]
    out: dict[str, dict[str, float]] = {}
    for model in (champion, *MODELS):
        mine = rows[rows["model"] == model]
        name = f"{model} (champion)" if model == champion else model
        out[name] = dict(zip(mine["target"], mine["value"].astype(float), strict=True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument(
        "--replicas",
        default="100,400",
        help="comma-separated replica counts at which to print the ceiling (default 100,400)",
    )
    args = parser.parse_args()
    try:
        checkpoints = sorted({int(r) for r in args.replicas.split(",")})
    except ValueError:
        checkpoints = []
    if not checkpoints or checkpoints[0] < 1:
        parser.error(f"--replicas: positive counts, got {args.replicas!r}")
    settings = load_settings() if args.data_root is None else Settings(data_root=args.data_root)
    future_file = settings.generated_dir / "ground_truth" / "future_purchases.parquet"
    if not future_file.exists():
        raise SystemExit(f"{future_file} does not exist: run `lakehouse generate` (or the demo)")
    scale = generated_scale(settings, None)
    future = pd.read_parquet(future_file, columns=["customer_id", "product_id"])
    truth = future.groupby("customer_id")["product_id"].agg(set).to_dict()

    began = time.monotonic()
    simulation = Simulation(build_world(scale))
    bought_before: set[tuple[int, int]] = set()
    for batch in simulation.days(scale.days):
        bought_before |= sold_pairs(batch)
    print(f"replayed the {scale.days}-day window in {time.monotonic() - began:.0f} s", flush=True)

    counts: Counter = Counter()
    rows = []
    began = time.monotonic()
    for replica in range(1, checkpoints[-1] + 1):
        copy_ = copy.deepcopy(simulation)  # the state at the window's end, untouched
        copy_.world.scale = dataclasses.replace(scale, seed=scale.seed + 1_000 + replica)
        bought: set[tuple[int, int]] = set()
        for day in range(scale.days, scale.days + GROUND_TRUTH_DAYS):
            bought |= sold_pairs(copy_.run_day(day))
        counts.update(bought)
        if replica in checkpoints:
            figures = {task: ceiling(counts, truth, bought_before, task) for task in ("all", "new")}
            rows.append((replica, time.monotonic() - began, figures))
            print(f"{replica} replicas: {figures}", flush=True)

    print(
        f"\n{len(truth):,} buyers in the {GROUND_TRUTH_DAYS} days after the window "
        f"({scale.customers:,} customers × {scale.products:,} products, seed {scale.seed})\n"
    )
    top = rows[-1][0]
    print(
        f"| recommender | NDCG@{K} all | NDCG@{K} new | share of the {top}-replica ceiling (all) |"
    )
    print("|---|---:|---:|---:|")
    best = rows[-1][2]
    for replica, seconds, figures in rows:
        print(
            f"| ceiling, {replica} replicas ({seconds:.0f} s) | {figures['all']:.4f} | "
            f"{figures['new']:.4f} | {figures['all'] / best['all']:.0%} |"
        )
    for model, figures in published(settings).items():
        all_, new = figures.get("all", float("nan")), figures.get("new", float("nan"))
        print(f"| {model} | {all_:.4f} | {new:.4f} | {all_ / best['all']:.0%} |")


if __name__ == "__main__":
    main()
