"""`lakehouse demo` (what `./run demo` runs after set-up): the platform end to end on embedded
defaults, then where everything is. Every data step runs through Dagster, recorded in the
instance the UI shows at the end. Idempotent: a second run reuses the running services, the
generated ERP database and the clickstream already on the topic."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import typer

from lakehouse import console
from lakehouse.console import dim, err, out
from lakehouse.core.settings import Settings, mask_password
from lakehouse.devstack import smoke
from lakehouse.devstack.services import ServiceManager

# A little bad input, all of it extra messages (the clean clickstream is unchanged), so the
# quality gates and the data-quality dashboard have something to show.
DEMO_FAULTS = dict(
    duplicates=0.002, malformed=0.0005, orphans=0.0005, future=0.0002, negative_quantities=0.0005
)


def run_demo(settings: Settings, scale: Any) -> None:
    started = time.monotonic()
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("Starting the embedded services", lambda: ServiceManager(settings).up(progress=dim)),
        ("Sending a message through the broker", lambda: smoke.broker_round_trip(settings)),
        (
            "Writing and reading a Delta table via Spark Connect",
            lambda: smoke.delta_round_trip(settings),
        ),
        ("Generating the ERP database and ground truth", lambda: _generate(settings, scale)),
        ("Producing the clickstream to Kafka", lambda: _produce(settings, scale)),
        (
            "Materialising the bronze assets with Dagster (Kafka and ERP → Delta)",
            lambda: _bronze(settings),
        ),
        (
            "Building silver and gold with Spark (each batch gated by Great Expectations)",
            lambda: _silver_gold(settings),
        ),
        (
            "Training the recommenders and customer models (champion picked offline)",
            lambda: _models(settings),
        ),
        (
            "Starting the stream processor, the recommendation API and a live clickstream",
            lambda: _realtime(settings),
        ),
        ("Building the marts with dbt and publishing the warehouse", lambda: _marts(settings)),
        ("Starting Superset with the dashboards", lambda: _superset(settings)),
        ("Starting the Dagster UI", lambda: _dagster_ui(settings)),
    ]
    results = []
    for number, (title, step) in enumerate(steps, start=1):
        out.print(f"[bold cyan][{number}/{len(steps)}][/bold cyan] {title}")
        step_started = time.monotonic()
        try:
            results.append(step())
        except typer.Exit:
            raise
        except Exception as exc:  # noqa: BLE001 - report any failure of a demo step plainly
            err.print(f"[red]error:[/red] {title} failed: {exc}", highlight=False)
            raise typer.Exit(1) from None
        out.print(f"      done in {time.monotonic() - step_started:.1f}s", style="dim")

    (
        statuses,
        kafka,
        delta,
        generated,
        produced,
        bronze,
        silver_gold,
        ml,
        realtime,
        marts,
        bi,
        ui,
    ) = results
    console.print_statuses(statuses, as_json=False)
    out.print(
        f"\nbroker: message at {kafka['topic']}[{kafka['partition']}]@{kafka['offset']} "
        f"read back in {kafka['round_trip_ms']} ms",
        highlight=False,
    )
    out.print(
        f"delta:  {delta['rows']} rows at {delta['path']} (version {delta['delta_version']}) "
        "written by Spark, read by Spark and delta-rs",
        highlight=False,
    )
    for label, line in (
        ("erp", generated),
        ("kafka", produced),
        ("bronze", bronze),
        ("silver/gold", silver_gold),
        ("models", ml),
        ("api", realtime),
        ("marts", marts),
    ):
        out.print(f"{label + ':':<7} {line}", highlight=False)
    out.print()
    console.print_superset(bi)
    out.print(f"\nDagster UI: [bold]{ui}[/bold]", highlight=False)
    out.print("\n[bold]Where everything is[/bold]")
    for key, value in settings.describe().items():
        out.print(f"  {key:<24} {value}", highlight=False)
    out.print(
        f"\n[green]Demo finished in {time.monotonic() - started:.1f}s.[/green] "
        "Services (the broker, Spark Connect, Redis, the stream processor and the API) keep "
        "running; stop them with `.venv/bin/lakehouse services down`, "
        "`.venv/bin/lakehouse bi down` and `.venv/bin/lakehouse dagster down`."
    )


def _generate(settings: Settings, scale: Any) -> str:
    from generator.generate import generate

    with console.day_progress(scale.days, quiet=False) as advance:
        report = generate(
            scale,
            settings.erp_db_url,
            settings.generated_dir,
            write_events=False,
            on_day=lambda b: advance(b.n_events),
        )
    where = mask_password(report.erp_db_url)
    if report.days_written == 0:
        return f"already generated ({report.days_skipped} days) in {where}"
    return f"{report.invoices_written:,} invoices, {report.lines_written:,} lines in {where}"


def _produce(settings: Settings, scale: Any) -> str:
    from generator.events import simulated_messages
    from lakehouse.core.kafka import list_topics
    from streaming.producer import Faults, produce

    topic = settings.events_topic
    marker = settings.generated_dir / f"produced-{topic}.json"
    if topic in list_topics(settings.kafka_bootstrap_servers) and marker.exists():
        return f"topic {topic} already holds the clickstream ({marker.read_text().strip()})"
    progress = console.progress_bar(quiet=False)
    task = progress.add_task("producing", total=scale.events)
    with progress:
        report = produce(
            settings.kafka_bootstrap_servers,
            topic,
            simulated_messages(scale),
            faults=Faults(**DEMO_FAULTS),
            on_progress=lambda r: progress.update(task, completed=r.events),
        )
    faults = sum(n for kind, n in report.kinds.items() if kind != "valid")
    summary = (
        f"{report.events:,} events to {topic} at {report.events_per_second:,.0f} msgs/s, "
        f"with {faults:,} faulty messages (duplicates, malformed, orphans, from the future, "
        "negative quantities) for the pipeline to catch"
    )
    marker.write_text(summary + "\n")
    return summary


def _groups(settings: Settings, title: str, *groups: str) -> Any:
    return console.run(settings, dg.AssetSelection.groups(*groups), title)


def _bronze(settings: Settings) -> str:
    from ingestion.erp import ERP_TABLES, bronze_name

    _groups(settings, "bronze", "bronze")
    lake = settings.lake
    events, dead = lake.open("bronze.events"), lake.open("bronze.events_dead_letter")
    erp = [t for t in ERP_TABLES if lake.open(f"bronze.{bronze_name(t)}") is not None]
    return (
        f"{events.count():,} events (version {events.version()}), {dead.count():,} dead letters, "
        f"{len(erp)} ERP tables at {lake.uri}/bronze"
    )


def _silver_gold(settings: Settings) -> str:
    outcome = _groups(settings, "silver and gold", "silver", "gold")
    facts = {
        name: settings.lake.open(f"gold.{name}").count()
        for name in ("fact_sales_line", "fact_events", "fact_sessions")
    }
    return (
        f"{len(outcome.materialized)} tables, each batch gated by Great Expectations; gold: "
        + ", ".join(f"{name} {rows:,} rows" for name, rows in facts.items())
    )


def _models(settings: Settings) -> str:
    from ml.evaluation import by_model
    from orchestration.defs.ml.assets import recommender_report
    from spark_jobs.recommender_training import POPULAR_DAYS

    outcome = _groups(settings, "training", "ml", "experiments", "serving")
    report = recommender_report(outcome.materialized)
    metric = settings.ml_champion_metric
    rows = {row["model"]: row for row in by_model(report["evaluations"], metric)}
    champion = report["champion"]

    def figures(model: str, split: str) -> str:
        row = rows[model]
        return f"{row.get(f'{split} all', 0):.3f} all / {row.get(f'{split} new', 0):.3f} new"

    split = "future" if "future all" in rows[champion] else "test"
    where = "on the generator's held-out future" if split == "future" else "on the test window"
    return (
        f"champion {champion}, {metric} {where}: {figures(champion, split)}; buy again "
        f"{figures('buy_again', split)}; popularity of the last {POPULAR_DAYS} days "
        f"{figures(f'popularity_{POPULAR_DAYS}d', split)}"
    )


def _realtime(settings: Settings) -> str:
    from serving.snapshot import load_snapshot

    realtime = ("stream", "api", "producer")
    statuses = ServiceManager(settings).up(progress=dim, include=realtime)
    snapshot = load_snapshot(settings.lake)
    customer = int(snapshot.lists.keys[0])
    # a product the session model can follow, else any sellable one
    model = snapshot.session_model
    sellable = sorted(snapshot.products)
    product = next((p for p in sellable if model and model.recommend([p], 1)), sellable[0])
    trip = smoke.recommendation_round_trip(settings, customer, product)
    started = {s.name: s.startup_seconds for s in statuses if s.name in realtime}
    return (
        f"{settings.api_url} (storefront at /demo, docs at /docs; snapshot "
        f"{trip['snapshot_version']}); customer "
        f"{customer} was shown {trip['before']}, viewed product {product} (POST /v1/events in "
        f"{trip['post_ms']} ms) and was then shown {trip['after']} in {trip['get_ms']} ms, "
        f"first because: {trip['first_reason']}; started in {started}"
    )


def _marts(settings: Settings) -> str:
    outcome = _groups(settings, "dbt build", "marts")
    build = outcome.values("build")[0]
    current = Path(settings.warehouse_path) / "warehouse.duckdb"
    return (
        f"{build['models']} dbt models, {build['tests_passed']} tests passed, "
        f"{build['tests_failed']} failed, published as build {build['warehouse_build']} at "
        f"{current} (open it read-only: duckdb -readonly {current}); dbt log: {build['log']}"
    )


def _superset(settings: Settings) -> dict:
    from lakehouse.devstack.superset import superset_up

    console.run(settings, [dg.AssetKey(["bi", "live_warehouse"])], "the live file")
    return superset_up(settings)


def _dagster_ui(settings: Settings) -> str:
    from lakehouse.devstack.dagster_ui import start_dagster

    status = start_dagster(settings, progress=dim)[0]
    loaded = (
        f"code location loaded in {status.startup_seconds:.1f}s"
        if status.started
        else "already running"
    )
    return f"{settings.dagster_url} ({loaded})"
