"""`lakehouse generate`: the ERP database, the event files and the ground truth for one world."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from generator.erp import ErpWriter
from generator.events import EventFiles
from generator.simulate import DayBatch, Simulation
from generator.world import Scale, World, build_world

GROUND_TRUTH_DAYS = 28  # the held-out future after the window, for recommender evaluation


@dataclass
class GenerateReport:
    scale: dict
    days_written: int
    days_skipped: int
    events_written: int
    invoices_written: int
    lines_written: int
    seconds: float
    events_per_second: float
    peak_rss_mb: float
    erp_db_url: str
    events_dir: str | None
    ground_truth_dir: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(
    scale: Scale,
    erp_db_url: str,
    out_dir: Path,
    *,
    until_day: int | None = None,
    write_events: bool = True,
    reset: bool = False,
    on_day: Callable[[DayBatch], None] = lambda _: None,
) -> GenerateReport:
    """Write days [already written, until_day) of the world to the ERP database (and the event
    files); once the whole window is written, also the ground truth."""
    started = time.perf_counter()
    until_day = scale.days if until_day is None else min(until_day, scale.days)
    erp = ErpWriter(erp_db_url)
    done = erp.prepare(scale, reset=reset)
    truth_dir = out_dir / "ground_truth"
    manifest = out_dir / "manifest.json"
    files = EventFiles(out_dir / "events") if write_events else None
    complete = (
        done >= until_day
        and (until_day < scale.days or truth_dir.exists())
        and (files is None or not files.missing(scale, until_day))
        and manifest.exists()
    )
    if complete:
        # Nothing left to write: report what is there without simulating again.
        previous = json.loads(manifest.read_text())
        return GenerateReport(
            **{
                **previous,
                "days_written": 0,
                "days_skipped": done,
                "events_written": 0,
                "invoices_written": 0,
                "lines_written": 0,
                "seconds": round(time.perf_counter() - started, 2),
                "events_per_second": 0.0,
            }
        )
    world = build_world(scale)
    simulation = Simulation(world)
    if done == 0:
        erp.write_master(world)
    events = invoices = lines = 0
    for batch in simulation.days(until_day):
        if batch.day >= done:
            erp.write_day(world, batch)
            invoices += len(batch.invoices["invoice_id"])
            lines += len(batch.lines["invoice"])
        # Event files are kept per day and independently of the ERP's progress: an earlier run
        # may have skipped them (--no-events, the demo).
        if files is not None and not files.path(batch.date).exists():
            events += files.write_day(world, batch)
        on_day(batch)
    if until_day == scale.days:
        write_ground_truth(world, simulation, truth_dir)
    elapsed = time.perf_counter() - started
    report = GenerateReport(
        scale=scale.to_dict(),
        days_written=max(until_day - done, 0),
        days_skipped=min(done, until_day),
        events_written=events,
        invoices_written=invoices,
        lines_written=lines,
        seconds=round(elapsed, 2),
        events_per_second=round(events / elapsed, 1) if elapsed else 0.0,
        peak_rss_mb=round(peak_rss_mb(), 1),
        erp_db_url=erp_db_url,
        events_dir=str(files.root) if files else None,
        ground_truth_dir=str(truth_dir) if until_day == scale.days else None,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(report.to_dict(), indent=2))
    return report


def write_ground_truth(world: World, simulation: Simulation, out: Path) -> None:
    """The latent tastes and the purchases of the GROUND_TRUTH_DAYS after the window (continuing
    the same simulation), which recommenders are scored against."""
    out.mkdir(parents=True, exist_ok=True)
    customers, products, times, quantities = [], [], [], []
    last = world.scale.days + GROUND_TRUTH_DAYS
    for day in range(world.scale.days, last):
        batch = simulation.run_day(day)
        inv, ln = batch.invoices, batch.lines
        sale = inv["type"] == "Sale"
        by_id = dict(zip(inv["invoice_id"][sale].tolist(), range(int(sale.sum())), strict=True))
        rows = [i for i, invoice in enumerate(ln["invoice"].tolist()) if invoice in by_id]
        idx = [by_id[ln["invoice"][i]] for i in rows]
        customers.append(inv["customer"][sale][idx].astype(np.int64) + 1)
        products.append(ln["product"][rows] + 1)
        times.append(inv["time"][sale][idx].astype("datetime64[ms]"))
        quantities.append(ln["quantity"][rows])
    pq.write_table(
        pa.table(
            {
                "customer_id": np.concatenate(customers),
                "product_id": np.concatenate(products),
                "purchased_at": np.concatenate(times),
                "quantity": np.concatenate(quantities),
            }
        ),
        out / "future_purchases.parquet",
    )
    prefs = world.customer_category_pref
    columns = {
        "customer_id": np.arange(1, world.n_customers + 1),
        "region": [world.region_names[r] for r in world.city_region[world.customer_city]],
        "activity": world.customer_activity,
        "price_preference": world.customer_price_pref,
        "staple_product_id": np.where(world.customer_staple >= 0, world.customer_staple + 1, 0),
        "restock_cycle_days": world.customer_restock_cycle,
        "churn_day": np.where(
            world.customer_churn_day < world.scale.days, world.customer_churn_day, -1
        ),
        "registered_day": world.customer_registered_day,
        "top_category": [world.category_names[c] for c in prefs.argmax(axis=1)],
    }
    for c, name in enumerate(world.category_names):
        slug = name.lower().replace(" & ", "_").replace(" ", "_")
        columns[f"pref_{slug}"] = prefs[:, c]
        columns[f"brand_{slug}"] = [
            world.brand_names[b] if b >= 0 else None for b in world.customer_favourite_brand[:, c]
        ]
    pq.write_table(pa.table(columns), out / "customer_tastes.parquet")
