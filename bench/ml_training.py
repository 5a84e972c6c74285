"""Recommender training at retail scale: interaction building in Spark, export, ALS, top-k, BPR.

    .venv/bin/python bench/ml_training.py                 # 1 M customers x 50 k products x 20 M
    .venv/bin/python bench/ml_training.py --scale 0.01    # the same shape at 1 %, a quick look
    .venv/bin/python bench/ml_training.py --json          # the figures as JSON on stdout
    .venv/bin/python bench/ml_training.py --iterations 5 --bpr-iterations 0 --no-spark-export

In a fresh data root with its own embedded services (Sail Spark Connect server, broker) on free
ports, each phase timed on its own:

0. generate: synthetic gold.fact_events (views, add-to-carts) and gold.fact_sales_line (purchases,
   some cancelled or returned) written with delta-rs one block of days at a time (bounded memory).
   Zipf-skewed product popularity, log-normal customer activity, each customer leaning to a home
   category (so the matrix has structure to learn).
1. spark: `spark_jobs.gold.customer_product_interactions` through Spark Connect, end to end: read
   both Delta tables, aggregate, write gold.customer_product_interactions (goal: < 120 s).
2. export + CSR: (customer_id, product_id, weight) to numpy through Arrow, column by column from
   the Delta table with delta-rs (and, for comparison, `DataFrame.toArrow()` over Spark Connect),
   then `ml.interactions.Interactions.from_arrays` (the CSR matrix).
3. ALS: `ml.recommenders.ALS` (implicit, conjugate gradient), every iteration timed through
   implicit's `fit_callback`; the median is compared with implicit's own published CPU figure
   scaled to this matrix and this machine's cores (goal: within 2x).
4. recommend: top 10 for 100 k customers through the project's batched `Recommender.recommend`,
   and through implicit's own `recommend` for comparison.
5. BPR: `ml.recommenders.BPR` for comparison (per iteration = fit seconds / iterations).
6. ranker (`--no-ranker` skips it): the Spark steps' `gold.customer_product_daily` (phase 1b)
   and `gold.customer_product_features` (phase 1c, the snapshot statistics of the 11 days the
   platform's chain snapshots; `--no-spark-features` skips it) built through Spark Connect and
   read with delta-rs, then `ml.ranker.LearnedRanker` (every candidate generator, features and
   LightGBM LambdaMART over `TRAINING_CUTOFFS` cutoffs, and the serving generators at the newest
   day; its snapshots read their statistics from phase 1c's table and its training cutoffs
   their candidates from phase 6a2's, proposed first as the platform's
   gold.customer_product_candidates step proposes them; `--no-candidates-table` skips that),
   then scoring
   `--ranker-customers` customers (customers/s) with LightGBM's predict and, with the forest
   compiled by lleaves (its compile timed apart), `SCORING_ROUNDS` other samples of as many,
   each apart: the median of their rates is the figure (a few seconds each on a shared
   machine), and the first's lists are checked against LightGBM's predict;
   "every customer scored" takes the path publishing takes at this size (compiled from
   `COMPILE_FROM_CUSTOMERS` customers on).
   The catalogue size (`--products`) is a dimension: item-kNN, content and the dense scorers
   grow with it.

Per phase: wall seconds, the client's CPU seconds and peak RSS (high-water mark reset at the start
of each phase through /proc/self/clear_refs, read with getrusage), and the Sail server's CPU
seconds and peak RSS (sampled every 0.2 s). CPU steal during the run is reported: the machines are
shared virtual machines.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import psutil
import pyarrow as pa
from common import free_port
from deltalake import DeltaTable, write_deltalake
from pyspark.sql import SparkSession
from silver_gold import PeakRss
from threadpoolctl import threadpool_limits

from lakehouse.core.settings import Settings
from lakehouse.core.spark import spark_session, stop_session
from lakehouse.devstack.services import STORE_PORTS, ServiceManager, free_port_block
from ml import RANKER_CANDIDATES, RANKER_FEATURES
from ml.interactions import Interactions
from ml.ranker import (
    COMPILE_FROM_CUSTOMERS,
    GENERATOR_CUSTOMERS,
    TRAINING_CUSTOMERS,
    TRAINING_CUTOFFS,
    Catalogue,
    LearnedRanker,
)
from ml.recommenders.factorization import ALS, BPR
from spark_jobs import gold, ml_inputs
from spark_jobs.recommender_training import candidate_rows, snapshot_rows

# -- implicit's own figures ------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A published implicit ALS CPU timing: seconds per iteration on a known matrix and CPU."""

    name: str
    seconds_per_iteration: float
    nonzeros: int
    factors: int
    cores: int

    def expected(self, nonzeros: int, factors: int, cores: int) -> float:
        """Scaled linearly per non-zero, per factor and per core. The conjugate-gradient solver's
        work is dominated by a pass over the non-zeros per CG step, each costing O(factors); the
        same README's last.fm timings grow ~linearly with factors (64 -> 256: 1.37 -> 5.48 s).
        Per-core speed is not scaled (Skylake-X 2017 vs this machine's CPU)."""
        return (
            self.seconds_per_iteration
            * (nonzeros / self.nonzeros)
            * (factors / self.factors)
            * (self.cores / cores)
        )


# Source: benchmarks/README.md of github.com/benfred/implicit (Ben Frederickson), "Spark
# Comparison": "All benchmarks reported here were performed on an Intel i7-7820x CPU" (8 cores,
# 16 threads), times per iteration averaged over 5 iterations, implicit's CPU conjugate-gradient
# ALS at its defaults otherwise (benchmarks/benchmark_spark.py: fit time / iterations).
# "Implicit (CPU)" at 64 factors: last.fm 360k 1.3660 s, MovieLens 20M 2.7515 s.
# last.fm 360k: ~360 k users x ~290 k artists; 17,535,655 rows in the raw file (user, artist,
# plays), summed into the CSR matrix. MovieLens 20M filtered to ratings >= 4 (as the README says):
# 9,995,410 ratings, 138 k users x 27 k movies; the README's author suspects a single-threaded
# bottleneck there, so it is shown as a second, pessimistic reference only.
LASTFM = Reference("implicit README, last.fm 360k", 1.3660, 17_535_655, 64, 8)
ML20M = Reference("implicit README, MovieLens 20M (>= 4 stars)", 2.7515, 9_995_410, 64, 8)
ALS_GOAL_RATIO = 2.0
SPARK_GOAL_SECONDS = 120.0
RANKER_GOAL_RATE = 5_000  # customers scored per second
SCORING_ROUNDS = 3  # samples scored with the compiled forest: the rate is their median
RANKER_GOAL_MINUTES = 15

# -- the synthetic shoppers ------------------------------------------------------------------

AS_OF = dt.date(2025, 6, 30)
WINDOW_DAYS = 14  # the ranker's label windows (ML_TEST_DAYS)
EPOCH = dt.date(1970, 1, 1)
SHARES = {"product_view": 0.80, "add_to_cart": 0.14, "purchase": 0.06}  # of interaction rows
CLICK_TYPES = ["product_view", "add_to_cart"]
HOME_SHARE = 0.5  # of interactions inside the customer's home category
CANCELLED, RETURNED = 0.02, 0.02  # of sales lines; excluded by the job


@dataclass(frozen=True)
class Shape:
    customers: int
    products: int
    interactions: int
    days: int = 180
    category_size: int = 100  # products per category
    chunk_rows: int = 2_000_000
    seed: int = 7


def _cdf(weights: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _zipf(n: int, exponent: float = 0.8) -> npt.NDArray[np.float64]:
    return _cdf(np.arange(1, n + 1, dtype=np.float64) ** -exponent)


class Population:
    """Who is active, what is popular, and which category each customer leans to. Product p
    (0-based) is in category p % categories and lower ids are more popular, globally and inside
    their category."""

    def __init__(self, shape: Shape, rng: np.random.Generator):
        self.shape = shape
        self.customer_cdf = _cdf(rng.lognormal(0.0, 1.0, shape.customers))
        self.product_cdf = _zipf(shape.products)
        self.categories = max(1, shape.products // shape.category_size)
        self.in_category_cdf = _zipf(-(-shape.products // self.categories))
        self.home = rng.integers(0, self.categories, shape.customers)

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(customer ids, product ids) of n interactions, ids from 1."""
        customers = _pick(self.customer_cdf, rng, n)
        products = _pick(self.product_cdf, rng, n)
        home = rng.random(n) < HOME_SHARE
        rank = _pick(self.in_category_cdf, rng, int(home.sum()))
        in_home = rank * self.categories + self.home[customers[home]]
        products[home] = np.minimum(in_home, self.shape.products - 1)
        return customers + 1, products + 1


def _pick(cdf: npt.NDArray[np.float64], rng: np.random.Generator, n: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(n)), len(cdf) - 1).astype(np.int64)


def _timestamps(rng: np.random.Generator, first_day: int, days: int, n: int) -> np.ndarray:
    """Microseconds since the epoch, uniform over `days` days from `first_day` (epoch days)."""
    seconds = (first_day + rng.integers(0, days, n)) * 86_400 + rng.integers(0, 86_400, n)
    return seconds * 1_000_000


def _tables(
    population: Population, rng: np.random.Generator, first_day: int, days: int, n: int
) -> tuple[pa.Table, pa.Table]:
    """One block of days: (fact_events rows, fact_sales_line rows)."""
    customers, products = population.draw(rng, n)
    micros = _timestamps(rng, first_day, days, n)
    kind = np.searchsorted(np.cumsum(list(SHARES.values())), rng.random(n) * 0.999999)
    click, bought = kind < 2, kind == 2
    events = pa.table(
        {
            "customer_id": customers[click],
            "product_id": products[click],
            "event_type": pa.DictionaryArray.from_arrays(
                kind[click].astype(np.int8), CLICK_TYPES
            ).cast(pa.string()),
            "event_time": pa.array(micros[click], pa.timestamp("us", tz="UTC")),
            "event_date": pa.array((micros[click] // 86_400_000_000).astype(np.int32), pa.date32()),
        }
    )
    m = int(bought.sum())
    flag = rng.random(m)
    sales = pa.table(
        {
            "customer_id": customers[bought],
            "product_id": products[bought],
            "invoice_time": pa.array(micros[bought], pa.timestamp("us", tz="UTC")),
            "invoice_date": pa.array(
                (micros[bought] // 86_400_000_000).astype(np.int32), pa.date32()
            ),
            "quantity": rng.geometric(0.7, m).astype(np.int32),
            "is_cancelled": flag < CANCELLED,
            "is_return": (flag >= CANCELLED) & (flag < CANCELLED + RETURNED),
        }
    )
    return events, sales


TABLES = {"events": ("fact_events", "event_date"), "sales": ("fact_sales_line", "invoice_date")}


def generate(shape: Shape, settings: Settings) -> dict[str, int]:
    """Write the two fact tables, one block of days at a time (one file per date partition)."""
    rng = np.random.default_rng(shape.seed)
    population = Population(shape, rng)
    first = (AS_OF - EPOCH).days - shape.days + 1
    block = max(1, -(-shape.days * shape.chunk_rows // shape.interactions))
    rows = dict.fromkeys(TABLES, 0)
    for start in range(0, shape.days, block):
        end = min(start + block, shape.days)
        n = shape.interactions * end // shape.days - shape.interactions * start // shape.days
        block_tables = _tables(population, rng, first + start, end - start, n)
        tables = dict(zip(TABLES, block_tables, strict=True))
        for name, (table_name, partition) in TABLES.items():
            uri = settings.lake.table_uri(f"gold.{table_name}")
            write_deltalake(uri, tables[name], mode="append", partition_by=[partition])
            rows[name] += tables[name].num_rows
        progress(f"  generated {end}/{shape.days} days: {sum(rows.values()):,} rows")
    return rows


# -- measuring -------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _reset_client_peak() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0); False if it cannot be reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    client_cpu_s: float = 0.0
    client_peak_mb: float = 0.0
    server_cpu_s: float = 0.0
    server_peak_mb: float = 0.0
    steal_pct: float = 0.0  # of the machine's CPU time during the phase, stolen by the host
    peak_is_cumulative: bool = False  # the client's peak since start (no per-phase reset)
    figures: dict[str, float | int | str] = field(default_factory=dict)


class Recorder:
    """Times phases: wall, CPU and peak RSS of this process and of the Sail server."""

    def __init__(self, server_pid: int):
        self.server = psutil.Process(server_pid)
        self.phases: list[Phase] = []

    def _server_cpu(self) -> float:
        procs = [self.server, *self.server.children(recursive=True)]
        return sum(p.cpu_times().user + p.cpu_times().system for p in procs)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        record = Phase(name, peak_is_cumulative=not _reset_client_peak())
        progress(f"{name} ...")
        sampler = PeakRss(self.server.pid)
        sampler.start()
        cpu, server_cpu, machine = _client_cpu(), self._server_cpu(), psutil.cpu_times()
        started = time.monotonic()
        yield record
        record.seconds = time.monotonic() - started
        record.client_cpu_s = _client_cpu() - cpu
        record.client_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        record.server_cpu_s = self._server_cpu() - server_cpu
        record.server_peak_mb = sampler.stop()
        record.steal_pct = _steal_pct(machine, psutil.cpu_times())
        self.phases.append(record)
        progress(f"{name}: {record.seconds:.1f} s")


def _steal_pct(before: tuple[float, ...], after: tuple[float, ...]) -> float:
    total = sum(after) - sum(before)
    return 100 * (getattr(after, "steal", 0) - getattr(before, "steal", 0)) / total if total else 0


# -- the phases ------------------------------------------------------------------------------

COLUMNS = ["customer_id", "product_id", "weight"]
Arrays = dict[str, np.ndarray]


def build_interactions(spark: SparkSession, settings: Settings) -> str:
    """gold.customer_product_interactions from the two facts, through Spark Connect."""
    events, sales = (
        spark.read.format("delta").load(settings.lake.table_uri(f"gold.{name}"))
        for name, _ in TABLES.values()
    )
    frame = gold.customer_product_interactions(
        events, sales, AS_OF, settings.interaction_half_life_days
    )
    target = settings.lake.table_uri("gold.customer_product_interactions")
    frame.write.format("delta").mode("overwrite").save(target)
    return target


def build_daily(spark: SparkSession, settings: Settings) -> str:
    """gold.customer_product_daily (the ranker's input) from the two facts, through Spark."""
    events, sales = (
        spark.read.format("delta").load(settings.lake.table_uri(f"gold.{name}"))
        for name, _ in TABLES.values()
    )
    target = settings.lake.table_uri("gold.customer_product_daily")
    ml_inputs.daily_interactions(events, sales).write.format("delta").mode("overwrite").save(target)
    return target


def build_features(spark: SparkSession, settings: Settings, shape: Shape) -> str:
    """gold.customer_product_features (the ranker's snapshot statistics of every day the
    platform's chain snapshots) from gold.customer_product_daily, through Spark."""
    products = catalogue(shape, np.random.default_rng(shape.seed)).products
    dim_product = spark.createDataFrame(
        products.assign(subcategory=products["category"], is_current=True),
        "product_id long, product_name string, category_name string, brand_name string, "
        "list_price double, subcategory_name string, is_current boolean",
    )
    daily = spark.read.format("delta").load(settings.lake.table_uri("gold.customer_product_daily"))
    target = settings.lake.table_uri(RANKER_FEATURES)
    batches = ml_inputs.customer_product_features(daily, dim_product, WINDOW_DAYS)
    for number, batch in enumerate(batches):
        batch.write.format("delta").mode("append" if number else "overwrite").save(target)
    return target


def catalogue(shape: Shape, rng: np.random.Generator) -> Catalogue:
    """The synthetic catalogue: product p (from 1) in category (p - 1) % categories, as drawn."""
    ids = np.arange(1, shape.products + 1)
    categories = max(1, shape.products // shape.category_size)
    products = pd.DataFrame(
        {
            "product_id": ids,
            "name": [f"product {p}" for p in ids],
            "category": [f"category {c}" for c in (ids - 1) % categories],
            "brand": [f"brand {b}" for b in (ids - 1) % max(1, shape.products // 20)],
            "price": rng.lognormal(7.0, 1.0, shape.products),
        }
    )
    customers = np.arange(1, shape.customers + 1)
    return Catalogue(products, pd.Series([f"city {c % 20}" for c in customers], index=customers))


def export_delta(uri: str) -> Arrays:
    """The matrix's columns as numpy, one column at a time, straight from the Delta files."""
    dataset = DeltaTable(uri).to_pyarrow_dataset()
    return {c: dataset.to_table(columns=[c]).column(0).to_numpy() for c in COLUMNS}


def export_spark(spark: SparkSession, uri: str) -> Arrays:
    """The same columns through Spark Connect as Arrow batches (`DataFrame.toArrow`)."""
    table = spark.read.format("delta").load(uri).select(*COLUMNS).toArrow()
    return {c: table.column(c).to_numpy() for c in COLUMNS}


class TimedALS(ALS):
    """The project's ALS, recording the seconds of every iteration (implicit's fit_callback)."""

    def __init__(self, **params: float) -> None:
        super().__init__(**params)  # type: ignore[arg-type]
        self.iteration_seconds: list[float] = []

    def _build(self) -> object:
        model = super()._build()
        model.fit_callback = self._done  # type: ignore[attr-defined]
        return model

    def _done(self, iteration: int, seconds: float, _loss: float | None) -> None:
        self.iteration_seconds.append(seconds)
        progress(f"  ALS iteration {iteration + 1}/{self.iterations}: {seconds:.2f} s")


def recommend_project(model: ALS, customers: np.ndarray, k: int, step: int = 10_000) -> None:
    for start in range(0, len(customers), step):
        model.recommend(customers[start : start + step], k)
        progress(f"  recommended {min(start + step, len(customers)):,}/{len(customers):,}")


def recommend_implicit(
    model: ALS, interactions: Interactions, customers: np.ndarray, k: int
) -> None:
    rows = interactions.user_rows(customers)
    model.model.recommend(rows, interactions.matrix[rows], N=k)  # type: ignore[attr-defined]


# -- the report ------------------------------------------------------------------------------


def als_verdict(nonzeros: int, factors: int, median: float) -> dict[str, float | bool]:
    """Measured median seconds per iteration against each reference scaled to this run."""
    cores = os.cpu_count() or 1
    out: dict[str, float | bool] = {"measured_s_per_iteration": round(median, 3), "cores": cores}
    for key, ref in (("lastfm", LASTFM), ("ml20m", ML20M)):
        expected = ref.expected(nonzeros, factors, cores)
        out[f"expected_{key}_s"] = round(expected, 3)
        out[f"ratio_{key}"] = round(median / expected, 2)
    out["goal_met"] = median <= ALS_GOAL_RATIO * LASTFM.expected(nonzeros, factors, cores)
    return out


def print_report(report: dict) -> None:
    shape, als = report["shape"], report["als"]
    print(
        f"\nML training benchmark, {report['date']}: {shape['customers']:,} customers x "
        f"{shape['products']:,} products x {shape['interactions']:,} interaction rows, "
        f"{shape['factors']} factors"
    )
    print(f"machine: {report['machine']}")
    head = f"{'phase':<34} {'wall s':>8} {'client CPU s':>12} {'client MB':>10}"
    print(f"\n{head} {'Sail CPU s':>10} {'Sail MB':>8} {'steal %':>7}  figures")
    for p in report["phases"]:
        figures = ", ".join(f"{k}={_fmt(v)}" for k, v in p["figures"].items())
        peak = f"{p['client_peak_mb']:,.0f}" + ("*" if p["peak_is_cumulative"] else "")
        print(
            f"{p['name']:<34} {p['seconds']:>8.1f} {p['client_cpu_s']:>12.1f} {peak:>10} "
            f"{p['server_cpu_s']:>10.1f} {p['server_peak_mb']:>8,.0f} {p['steal_pct']:>7.1f}  "
            f"{figures}"
        )
    spark = report["spark_seconds"]
    print(
        f"\nSpark interaction building: {spark:.1f} s (goal < {SPARK_GOAL_SECONDS:.0f} s: "
        f"{'met' if spark < SPARK_GOAL_SECONDS else 'NOT met'})"
    )
    print(
        f"ALS: median {als['measured_s_per_iteration']:.2f} s/iteration on {als['cores']} cores; "
        f"implicit's last.fm figure scaled to this matrix: {als['expected_lastfm_s']:.2f} s -> "
        f"ratio {als['ratio_lastfm']:.2f} (goal <= {ALS_GOAL_RATIO}: "
        f"{'met' if als['goal_met'] else 'NOT met'}); "
        f"MovieLens-20M figure scaled: {als['expected_ml20m_s']:.2f} s -> "
        f"ratio {als['ratio_ml20m']:.2f}"
    )
    print(
        "reference: github.com/benfred/implicit benchmarks/README.md (i7-7820X, 8 cores), "
        "scaled per non-zero x per factor x per core"
    )
    ranker = report.get("ranker")
    if ranker:
        whole, rate = ranker["whole_s"], ranker["customers_per_s"]
        full = shape["customers"] >= 1_000_000 and shape["products"] >= 50_000
        verdict = (
            ("met" if whole <= RANKER_GOAL_MINUTES * 60 else "NOT met")
            if full
            else "the goal is for 1 M x 50 k; this shape is smaller"
        )
        print(
            f"ranker: daily rows, features + fit {ranker['build_and_fit_s']:.0f} s; scoring "
            f"{ranker['customers_per_s_lightgbm']:,.0f} customers/s with LightGBM's predict, "
            f"{ranker['customers_per_s_compiled']:,.0f} with the compiled forest (compiled in "
            f"{ranker['compile_s']:.0f} s); publishing's path {rate:,.0f} customers/s "
            f"(goal >= {RANKER_GOAL_RATE:,}: "
            f"{'met' if rate >= RANKER_GOAL_RATE else 'NOT met'}); with every customer scored "
            f"{whole / 60:.1f} min (goal <= {RANKER_GOAL_MINUTES} min: {verdict}), "
            f"peak client RSS {ranker['peak_mb']:,.0f} MB"
        )


def _disk_mb(path: str) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*.parquet")) / 2**20


def _fmt(value: float | int | str) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else value


def machine_note() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    memory = psutil.virtual_memory().total / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB RAM, load average at the end {load}"


# -- main ------------------------------------------------------------------------------------


def run(shape: Shape, args: argparse.Namespace, settings: Settings, rec: Recorder) -> dict:
    with rec.phase("0 generate inputs (delta-rs)") as p:
        rows = generate(shape, settings)
        p.figures = {"event_rows": rows["events"], "sales_line_rows": rows["sales"]}
    p.figures["parquet_mb"] = sum(
        _disk_mb(settings.lake.table_uri(f"gold.{t}")) for t, _ in TABLES.values()
    )
    spark = spark_session(settings.spark_remote)
    try:
        with rec.phase("1 Spark: build interactions") as p:
            uri = build_interactions(spark, settings)
        p.figures = {"rows": DeltaTable(uri).count(), "parquet_mb": _disk_mb(uri)}
        spark_seconds = p.seconds
        if args.spark_export:
            with rec.phase("2a export via Spark toArrow") as p:
                p.figures = {"rows": len(export_spark(spark, uri)["weight"])}
        features_uri = None
        if args.ranker:
            with rec.phase("1b Spark: build daily interactions") as p:
                daily_uri = build_daily(spark, settings)
            p.figures = {"rows": DeltaTable(daily_uri).count()}
        if args.ranker and args.spark_features:
            with rec.phase("1c Spark: build the ranker's features") as p:
                features_uri = build_features(spark, settings, shape)
            p.figures = {"rows": DeltaTable(features_uri).count()}
    finally:
        stop_session(spark)  # its client threads would keep the process alive
    with rec.phase("2b export via delta-rs") as p:
        arrays = export_delta(uri)
        p.figures = {"rows": len(arrays["weight"])}
    with rec.phase("2c CSR matrix (Interactions)") as p:
        interactions = Interactions.from_arrays(*(arrays[c] for c in COLUMNS))
        del arrays
        users, items = interactions.shape
        nnz = interactions.matrix.nnz
        p.figures = {"users": users, "items": items, "nonzeros": nnz}
    with rec.phase("3 ALS fit") as p:
        als = TimedALS(factors=args.factors, iterations=args.iterations).fit(interactions)
        median = statistics.median(als.iteration_seconds)
        p.figures = {"iterations": args.iterations, "median_s_per_iter": median}
        p.figures |= {"min_s": min(als.iteration_seconds), "max_s": max(als.iteration_seconds)}
    p.figures["cores_busy"] = p.client_cpu_s / p.seconds  # 2.0 = both cores all the time
    rng = np.random.default_rng(shape.seed)
    n = min(args.recommend_customers, users)
    customers = rng.choice(interactions.user_ids, n, replace=False)
    with rec.phase(f"4a top-{args.k} project recommend") as p:
        recommend_project(als, customers, args.k)
        p.figures = {"customers": n}
    with rec.phase(f"4b top-{args.k} implicit recommend") as p:
        recommend_implicit(als, interactions, customers, args.k)
        p.figures = {"customers": n}
    for phase in rec.phases[-2:]:
        phase.figures["per_1k_customers_s"] = phase.seconds * 1000 / n
    if args.bpr_iterations:
        with rec.phase("5 BPR fit") as p:
            BPR(factors=args.factors, iterations=args.bpr_iterations).fit(interactions)
            p.figures = {"iterations": args.bpr_iterations}
        p.figures["mean_s_per_iter"] = p.seconds / args.bpr_iterations
    ranker = None
    if args.ranker:
        del interactions, als
        candidates_uri = settings.lake.table_uri(RANKER_CANDIDATES)
        ranker = ranker_phases(
            shape,
            args,
            daily_uri,
            features_uri,
            candidates_uri if args.candidates_table else None,
            rec,
        )
    return {
        "ranker": ranker,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "shape": asdict(shape) | {"factors": args.factors},
        "machine": machine_note(),
        "phases": [asdict(p) for p in rec.phases],
        "spark_seconds": spark_seconds,
        "spark_goal_met": spark_seconds < SPARK_GOAL_SECONDS,
        "als": als_verdict(nnz, args.factors, median),
        "reference": {"lastfm": asdict(LASTFM), "ml20m": asdict(ML20M)},
    }


def ranker_phases(
    shape: Shape,
    args: argparse.Namespace,
    daily_uri: str,
    features_uri: str | None,
    candidates_uri: str | None,
    rec: Recorder,
) -> dict[str, float]:
    """Load the daily rows, propose the training cutoffs' candidates into a table (when
    `candidates_uri`), fit the learned ranker (its snapshots reading the features Spark built,
    when it did, and its cutoffs the candidates table), score a sample of customers."""
    with rec.phase("6a load daily rows (delta-rs)") as p:
        daily = DeltaTable(daily_uri).to_pyarrow_table().to_pandas(date_as_object=False)
        p.figures = {"rows": len(daily)}
    ranker = LearnedRanker(
        catalogue(shape, np.random.default_rng(shape.seed)),
        WINDOW_DAYS,
        training_customers=args.ranker_training_customers,
        generator_customers=args.ranker_generator_customers,
    )
    read: list[dt.date] = []

    def features(day: dt.date, customers: np.ndarray | None) -> pd.DataFrame | None:
        rows = snapshot_rows(DeltaTable(features_uri), day, customers)
        read.extend([day] if rows is not None else [])  # None: computed in-process
        return rows

    statistics = features if features_uri else None
    proposed, taken = None, []
    if candidates_uri:
        cutoffs = ranker.training_cutoffs(daily, AS_OF)
        with rec.phase(f"6a2 ranker candidates ({len(cutoffs)} cutoffs, table)") as p:
            for number, cutoff in enumerate(cutoffs):
                frame = ranker.training_candidates(daily, cutoff, statistics).assign(as_of=cutoff)
                mode = "append" if number else "overwrite"
                write_deltalake(candidates_uri, pa.Table.from_pandas(frame), mode=mode)
        p.figures = {"rows": DeltaTable(candidates_uri).count()}

        def proposed(day: dt.date, buyers: np.ndarray) -> pd.DataFrame | None:
            rows = candidate_rows(DeltaTable(candidates_uri), day)
            taken.extend([day] if rows is not None else [])
            return rows

    read.clear()  # the fit's own reads
    with rec.phase(f"6b ranker fit ({TRAINING_CUTOFFS} cutoffs + serving)") as p:
        ranker.fit(daily, AS_OF, statistics=statistics, candidates=proposed)
        p.figures = {k: round(v, 3) for k, v in ranker.training.items()}
        p.figures["snapshots_read"] = len(read)
        p.figures["candidates_read"] = len(taken)
    if args.save_ranker:  # untimed: to profile its scoring without fitting it again
        with args.save_ranker.open("wb") as file:
            pickle.dump(ranker, file, protocol=pickle.HIGHEST_PROTOCOL)
        progress(f"ranker saved to {args.save_ranker}")
    # samples without a common customer: the serving generators keep the candidates of the
    # batches scored last, which a later sample must not find ready
    known = daily["customer_id"].unique()
    n = min(args.ranker_customers, len(known) // (1 + SCORING_ROUNDS))
    drawn = np.random.default_rng(shape.seed).choice(known, (1 + SCORING_ROUNDS) * n, replace=False)
    customers, samples = drawn[:n], np.split(drawn[n:], SCORING_ROUNDS)
    del daily
    with rec.phase("6c ranker scoring (LightGBM predict)") as p:
        ranker.recommend(customers, args.k, compiled=False)
        p.figures = {"customers": n}
    p.figures["customers_per_s"] = booster_rate = n / p.seconds
    with rec.phase("6d ranker forest compiled (lleaves)") as p:
        ranker.compiled()
    compile_s = p.seconds
    with rec.phase(f"6e ranker scoring (compiled forest, {SCORING_ROUNDS} samples)") as p:
        rates, lists = [], []
        for sample in samples:
            clock = time.monotonic()
            lists.append(ranker.recommend(sample, args.k, compiled=True))
            rates.append(n / (time.monotonic() - clock))
        p.figures = {"customers": n, "rates": "/".join(f"{r:.0f}" for r in rates)}
    p.figures["customers_per_s"] = compiled_rate = float(np.median(rates))
    booster = ranker.recommend(samples[0], args.k, compiled=False)  # untimed: the same lists?
    p.figures["same_lists"] = bool((lists[0].product_ids == booster.product_ids).all())
    ours = [q for q in rec.phases if q.name[:2] in ("1b", "1c", "6a", "6b", "6c", "6d", "6e")]
    fit = sum(q.seconds for q in ours if q.name[:2] in ("1b", "1c", "6a", "6b"))
    # what publishing every customer's list does: the compiled forest from
    # COMPILE_FROM_CUSTOMERS customers on, the scoring extrapolated from the sample
    big = shape.customers >= COMPILE_FROM_CUSTOMERS
    rate = compiled_rate if big else booster_rate
    return {
        "build_and_fit_s": fit,
        "customers_per_s": rate,
        "customers_per_s_lightgbm": booster_rate,
        "customers_per_s_compiled": compiled_rate,
        "compile_s": compile_s,
        "whole_s": fit + (compile_s if big else 0.0) + shape.customers / rate,
        "peak_mb": max(q.client_peak_mb for q in ours),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--interactions", type=int, default=20_000_000)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the three sizes")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--bpr-iterations", type=int, default=10, help="0 skips BPR")
    parser.add_argument("--recommend-customers", type=int, default=100_000)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument(
        "--no-spark-export", dest="spark_export", action="store_false", help="skip toArrow"
    )
    parser.add_argument(
        "--ranker", action=argparse.BooleanOptionalAction, default=True, help="phase 6"
    )
    parser.add_argument(
        "--spark-features",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="phase 1c: the ranker's features built by Spark, as the platform does "
        "(--no-spark-features: its snapshots compute them in-process)",
    )
    parser.add_argument(
        "--candidates-table",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="phase 6a2: the training cutoffs' candidates proposed into a table first, as the "
        "platform's step does (--no-candidates-table: the fit proposes them itself)",
    )
    parser.add_argument("--ranker-customers", type=int, default=20_000)
    parser.add_argument(
        "--ranker-training-customers",
        type=int,
        default=TRAINING_CUSTOMERS,
        help="buyers per training window the ranker learns from (0 = all; as "
        "ML_RANKER_TRAINING_CUSTOMERS)",
    )
    parser.add_argument(
        "--ranker-generator-customers",
        type=int,
        default=GENERATOR_CUSTOMERS,
        help="customers whose histories each training cutoff's generators are fitted on (0 = "
        "all; as ML_RANKER_GENERATOR_CUSTOMERS)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--json-out", type=Path, help="also write the JSON report to this file")
    parser.add_argument("--keep", action="store_true", help="keep the data root")
    parser.add_argument(
        "--save-ranker", type=Path, help="pickle the fitted ranker to this file (untimed)"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    shape = Shape(
        customers=max(1, round(args.customers * args.scale)),
        products=max(1, round(args.products * args.scale)),
        interactions=max(1, round(args.interactions * args.scale)),
    )
    root = Path(tempfile.mkdtemp(prefix="bench-ml-training-"))
    settings = Settings(
        data_root=root,
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        spark_remote=f"sc://127.0.0.1:{free_port()}",
        broker_store_url=f"http://127.0.0.1:{free_port_block(STORE_PORTS)}",
        redis_port=free_port(),
    )
    manager = ServiceManager(settings)
    try:
        manager.up()
        sail = manager.running_process(manager.get("spark"))
        assert sail is not None
        # numpy loaded OpenBLAS before `ml` could set OPENBLAS_NUM_THREADS=1 (ml/__init__.py):
        # cap it here instead, or implicit's threads and OpenBLAS's fight over the 2 cores.
        with threadpool_limits(limits=1, user_api="blas"):
            report = run(shape, args, settings, Recorder(sail.pid))
    finally:
        manager.down()
        if args.keep:
            progress(f"data root kept: {root}")
        else:
            subprocess.run(["rm", "-rf", str(root)], check=False)
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
