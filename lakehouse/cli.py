"""The `lakehouse` command line: a table of commands.

Data commands (ingest, extract, transform, ml train, marts build, bi refresh) run their assets
through Dagster (orchestration/lib/runs.py), recorded in the instance the UI reads; the
simulators (generate, produce) feed the sources; the embedded services, the Dagster UI,
Superset's web server and the demo are the dev stack (lakehouse/devstack/).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from lakehouse import console
from lakehouse import data_commands as data
from lakehouse import source_commands as sources
from lakehouse.console import fail, out, print_json
from lakehouse.core.kafka import EVENTS_TOPIC_PARTITIONS
from lakehouse.core.settings import Settings, SettingsError, load_settings
from lakehouse.source_commands import PRESET_HELP

app = typer.Typer(
    name="lakehouse",
    help="Retail Lakehouse: run the embedded platform and its pipelines.",
    no_args_is_help=True,
    add_completion=False,
)
services_app = typer.Typer(
    help="The embedded services: Kafka broker, its object store, Spark Connect, Redis and the "
    "stream processor."
)
dagster_app = typer.Typer(help="The Dagster UI (webserver, daemon, code server).")
bi_app = typer.Typer(help="Superset over the warehouse: dashboards as code, SQL Lab.")
marts_app = typer.Typer(help="The dbt marts in the DuckDB warehouse: build, publish, inspect.")
ml_app = typer.Typer(help="Recommenders and customer models: train, evaluate, pick the champion.")
for sub in (services_app, dagster_app, bi_app, marts_app, ml_app):
    sub.info.no_args_is_help = True
app.add_typer(services_app, name="services")
app.add_typer(dagster_app, name="dagster")
app.add_typer(bi_app, name="bi")
app.add_typer(marts_app, name="marts")
app.add_typer(ml_app, name="ml")

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Day = dt.datetime | None


def day(*names: str, help: str) -> typer.models.OptionInfo:  # noqa: A002 - typer's name
    """An option taking a date (YYYY-MM-DD)."""
    return typer.Option(*names, formats=["%Y-%m-%d"], help=help)


T = TypeVar("T")


@app.callback()
def _main() -> None:
    # Client libraries log every refused connection, and Dagster's integrations log into the
    # run's log what the CLI shows as progress: the CLI reports failures itself.
    for noisy in ("kafka", "py4j", "pyspark"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    if logging.getLogger().handlers:
        return  # run from Python (tests), whose logging is set up already
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
        handler.addFilter(lambda r: r.levelno >= logging.ERROR or not r.name.startswith("dagster"))


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc), code=2)


def _service(action: Callable[[], T]) -> T:
    """Run a dev-stack action, turning its expected failures into one red line and exit 1."""
    from lakehouse.devstack.services import ServiceError
    from warehouse.superset.admin import SupersetError

    try:
        return action()
    except (ServiceError, SupersetError) as exc:
        fail(str(exc))


# -- the dev stack ------------------------------------------------------------------------------


@services_app.command("up")
def services_up(
    with_: Annotated[
        list[str] | None,
        typer.Option("--with", help="Also start an on-demand service: stream, api (repeatable)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Start the embedded services (idempotent) and wait until they are healthy."""
    from lakehouse.devstack.services import ServiceManager

    manager = ServiceManager(_settings())
    include = tuple(with_ or ())
    statuses = _service(
        lambda: manager.up(progress=console.progress_lines(as_json), include=include)
    )
    console.print_health(statuses, as_json)


@services_app.command("down")
def services_down(as_json: JsonOption = False) -> None:
    """Stop the embedded services started from this data root (by pid)."""
    from lakehouse.devstack.services import ServiceManager

    console.print_statuses(_service(ServiceManager(_settings()).down), as_json)


@services_app.command("status")
def services_status(as_json: JsonOption = False) -> None:
    """Each service's endpoint, pid, memory and health. Exit code 1 if any is down."""
    from lakehouse.devstack.services import ServiceManager

    console.print_health(_service(ServiceManager(_settings()).status), as_json)


@dagster_app.command("up")
def dagster_up(as_json: JsonOption = False) -> None:
    """Write and migrate the instance, start `dagster dev` on 127.0.0.1 (idempotent); healthy
    once the code location has loaded."""
    from lakehouse.devstack.dagster_ui import start_dagster

    settings = _settings()
    statuses = _service(lambda: start_dagster(settings, console.progress_lines(as_json)))
    console.print_health(statuses, as_json)


@dagster_app.command("down")
def dagster_down(as_json: JsonOption = False) -> None:
    """Stop the embedded Dagster UI (by pid)."""
    from lakehouse.devstack.dagster_ui import dagster_manager

    console.print_statuses(_service(dagster_manager(_settings()).down), as_json)


@dagster_app.command("status")
def dagster_status(as_json: JsonOption = False) -> None:
    """The Dagster UI's endpoint, pid, memory and health. Exit code 1 if it is down."""
    from lakehouse.devstack.dagster_ui import dagster_manager

    console.print_health(_service(dagster_manager(_settings()).status), as_json)


@bi_app.command("up")
def bi_up(as_json: JsonOption = False) -> None:
    """Apply the dashboards as code (Dagster asset bi/superset: metadata migrations, admin,
    bundle), then start Superset's web server on 127.0.0.1 (idempotent)."""
    from lakehouse.devstack.superset import superset_up

    report = _service(lambda: superset_up(_settings(), quiet=as_json))
    if as_json:
        print_json(report)
    else:
        console.print_superset(report)
    if report["server"] is not None and not report["server"]["healthy"]:
        raise typer.Exit(1)


@bi_app.command("down")
def bi_down(as_json: JsonOption = False) -> None:
    """Stop the embedded Superset web server (by pid)."""
    from lakehouse.devstack.superset import SupersetServer

    console.print_statuses([_service(SupersetServer(_settings()).down)], as_json)


@bi_app.command("status")
def bi_status(as_json: JsonOption = False) -> None:
    """Superset's endpoint, pid, memory and health. Exit code 1 if it is down."""
    from lakehouse.devstack.superset import SupersetServer

    console.print_health([_service(SupersetServer(_settings()).status)], as_json)


@app.command("demo")
def demo(preset: Annotated[str, typer.Option(help=PRESET_HELP)] = "demo") -> None:
    """Run the platform end to end on embedded defaults and print where everything is.

    Idempotent: a second run reuses the running services, the generated ERP database and the
    clickstream already on the topic."""
    from lakehouse.devstack.demo import run_demo

    run_demo(_settings(), sources.scale(preset))


@app.command("settings")
def show_settings(as_json: JsonOption = False) -> None:
    """Print the resolved configuration (environment variables over embedded defaults)."""
    values = _settings().describe()
    if as_json:
        print_json(values)
        return
    for key, value in values.items():
        out.print(f"[bold]{key:<24}[/bold] {value}", highlight=False)


# -- the sources: the simulated ERP and website -------------------------------------------------


@app.command("generate")
def generate_command(
    preset: Annotated[str, typer.Option(help=PRESET_HELP)] = "demo",
    customers: Annotated[int | None, typer.Option(help="Override the preset.")] = None,
    products: Annotated[int | None, typer.Option(help="Override the preset.")] = None,
    days: Annotated[int | None, typer.Option(help="Simulated days (override).")] = None,
    events: Annotated[int | None, typer.Option(help="Target event count (override).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (override).")] = None,
    start: Annotated[Day, day(help="First simulated day.")] = None,
    until: Annotated[
        Day,
        day(
            help="Write only the days before this date; a later run continues from there "
            "(so master-data changes appear over time)."
        ),
    ] = None,
    no_events: Annotated[bool, typer.Option("--no-events", help="Skip the event files.")] = False,
    reset: Annotated[bool, typer.Option(help="Drop and recreate the ERP tables first.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Generate the ERP database (MV_* tables), the clickstream event files and the ground truth."""
    world = sources.scale(
        preset, start, customers=customers, products=products, days=days, events=events, seed=seed
    )
    sources.generate(_settings(), world, until, events=not no_events, reset=reset, as_json=as_json)


@app.command("produce")
def produce_command(
    topic: Annotated[str | None, typer.Option(help="Default: KAFKA_EVENTS_TOPIC.")] = None,
    rate: Annotated[float, typer.Option(min=0, help="Messages per second; 0 = unthrottled.")] = 0,
    events: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    duration: Annotated[float | None, typer.Option(min=0.1, help="Stop after seconds.")] = None,
    start: Annotated[Day, day(help="First simulated day to send.")] = None,
    days: Annotated[int | None, typer.Option(min=1, help="Simulated days to send.")] = None,
    key: Annotated[str, typer.Option(help="Message key: session or customer.")] = "session",
    duplicates: Annotated[float, typer.Option(help="Share of events sent twice.")] = 0.0,
    late: Annotated[float, typer.Option(help="Share of events sent late, out of order.")] = 0.0,
    malformed: Annotated[float, typer.Option(help="Extra malformed messages, share.")] = 0.0,
    drift: Annotated[
        float, typer.Option(help="Share with an extra field, the next minor version.")
    ] = 0.0,
    orphans: Annotated[float, typer.Option(help="Extra events with unknown ids, share.")] = 0.0,
    future: Annotated[float, typer.Option(help="Extra events 1-30 days ahead, share.")] = 0.0,
    negative_quantities: Annotated[
        float, typer.Option(help="Extra cart/purchase events with quantity < 0, share.")
    ] = 0.0,
    partitions: Annotated[
        int, typer.Option(min=1, help="Partitions if creating the topic.")
    ] = EVENTS_TOPIC_PARTITIONS,
    preset: Annotated[str | None, typer.Option(help="World when nothing was generated.")] = None,
    ack_log: Annotated[
        Path | None, typer.Option(help="CSV of acknowledged messages (partition, offset, kind).")
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Replay the world's sessions forever with events stamped now, at --rate "
            "(default LIVE_EVENTS_PER_SECOND): the demo's live clickstream.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Send the simulated clickstream to Kafka, optionally with faults injected.

    Uses the world of the last `lakehouse generate` (so purchases match ERP invoices), or a
    preset if nothing was generated."""
    faults = dict(duplicates=duplicates, late=late, malformed=malformed, drift=drift)
    faults |= dict(orphans=orphans, future=future, negative_quantities=negative_quantities)
    sources.produce(
        _settings(),
        topic=topic,
        preset=preset,
        start=start,
        days=days,
        key=key,
        faults=faults,
        events=events,
        ack_log=ack_log,
        as_json=as_json,
        rate=rate,
        duration=duration,
        partitions=partitions,
        live=live,
    )


@app.command("simulate-traffic")
def simulate_traffic_command(
    rate: Annotated[
        float, typer.Option(min=0.1, max=1000, help="Sessions started per second.")
    ] = 5,
    duration: Annotated[float, typer.Option(min=1, max=86_400, help="Seconds to run.")] = 60,
    sessions: Annotated[
        int | None, typer.Option(min=1, max=1_000_000, help="Stop after this many sessions.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=256, help="Sessions at a time.")] = 16,
    seed: Annotated[int, typer.Option(help="Who shops, and how they react.")] = 7,
    preset: Annotated[str | None, typer.Option(help="World when nothing was generated.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Simulated shoppers through the recommendation API (API_URL): the world's customers react
    to each list by their latent tastes, clicking and buying more of what fits them; the API
    records impressions, the shoppers' clicks, carts and purchases are posted as events. Drives
    an A/B experiment end to end (docs/experiments.md)."""
    settings = _settings()
    sources.simulate_traffic(
        settings,
        preset=preset,
        rate=rate,
        duration=duration,
        sessions=sessions,
        workers=workers,
        seed=seed,
        as_json=as_json,
    )


@app.command("stream")
def stream_command(
    start: Annotated[
        str,
        typer.Option(help="Where a new consumer group starts: latest (live) or earliest."),
    ] = "latest",
    max_seconds: Annotated[float | None, typer.Option(min=0.1, help="Stop after seconds.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The stream processor: the clickstream into the online store (Redis) until Ctrl-C: live
    session and customer activity, per-minute counters and the order feed."""
    from lakehouse.devstack.stream import run_stream

    if start not in ("latest", "earliest"):
        raise typer.BadParameter(
            f"expected latest or earliest, got {start!r}", param_hint="--start"
        )
    settings = _settings()
    with console.kafka_errors(settings), console.redis_errors(settings):
        report = run_stream(settings, start, max_seconds, quiet=as_json)
    if as_json:
        print_json(report)
    else:
        out.print(
            f"applied {report['applied']:,} events ({report['duplicates']:,} duplicates, "
            f"{report['bad']:,} bad messages skipped) in {report['seconds']:.1f} s"
        )


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 in a container).")] = (
        "127.0.0.1"
    ),
    server: Annotated[
        str | None, typer.Option(help="granian or uvicorn. Default: API_SERVER.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="Worker processes. Default: API_WORKERS.")
    ] = None,
) -> None:
    """The recommendation API on API_URL's port, in the foreground (the demo runs it as a
    managed service: `lakehouse services up --with api`). OpenAPI docs at /docs."""
    import os

    from lakehouse.devstack.services import api_command, api_env, prepare_api

    if server not in (None, "granian", "uvicorn"):
        raise typer.BadParameter(
            f"expected granian or uvicorn, got {server!r}", param_hint="--server"
        )
    settings = _settings()
    command = api_command(settings, host, server, workers)
    prepare_api(settings)
    out.print(f"serving {settings.api_url} with {Path(command[0]).name}", highlight=False)
    os.execve(command[0], command, {**os.environ, **api_env(settings)})


# -- data commands: runs of the assets through Dagster (lakehouse/data_commands.py) ------------


@app.command("ingest")
def ingest_command(
    topic: Annotated[str | None, typer.Option(help="Default: KAFKA_EVENTS_TOPIC.")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Keep ingesting until stopped.")] = False,
    status: Annotated[bool, typer.Option("--status", help="Show offsets and lag only.")] = False,
    reset_offsets: Annotated[
        bool,
        typer.Option(
            "--reset-offsets",
            help="After the broker lost or recreated the topic: read it again from its log "
            "start (the gap is recorded in bronze.events_offset_resets).",
        ),
    ] = False,
    data_may_be_missing: Annotated[
        bool,
        typer.Option(
            "--i-know-data-may-be-missing",
            help="Confirms --reset-offsets: messages the broker lost are not in bronze.",
        ),
    ] = False,
    group: Annotated[str, typer.Option(help="Consumer group [lakehouse-bronze-<topic>].")] = "",
    max_events: Annotated[int | None, typer.Option(min=1, help="Stop after messages.")] = None,
    max_seconds: Annotated[float | None, typer.Option(min=0.1, help="Stop after seconds.")] = None,
    batch_events: Annotated[int, typer.Option(min=1, help="Messages per Delta commit.")] = 50_000,
    batch_seconds: Annotated[
        float, typer.Option(min=0.05, help="Longest a message waits for its commit.")
    ] = 2.0,
    session_timeout_ms: Annotated[
        int, typer.Option(min=1000, help="Group session timeout.")
    ] = 6000,
    as_json: JsonOption = False,
) -> None:
    """Move the clickstream topic into bronze.events exactly once (bad messages to
    bronze.events_dead_letter): the Dagster asset bronze/events ingests what the topic holds,
    then stops; --follow keeps a long-running ingester going; --status shows offsets and lag;
    --reset-offsets starts again from the broker's log after it lost or recreated the topic."""
    settings = _settings()
    if reset_offsets and not data_may_be_missing:
        raise typer.BadParameter(
            "--reset-offsets skips whatever the broker lost: add --i-know-data-may-be-missing "
            "to confirm (see `lakehouse ingest --status` first)"
        )
    data.ingest(
        settings,
        topic=topic or settings.events_topic,
        group=group,
        session_timeout_ms=session_timeout_ms,
        follow=follow,
        status=status,
        reset=reset_offsets,
        as_json=as_json,
        max_events=max_events,
        max_seconds=max_seconds,
        batch_max_events=batch_events,
        batch_max_seconds=batch_seconds,
    )


@app.command("extract")
def extract_command(
    table: Annotated[list[str] | None, typer.Option(help="ERP table(s); default: all.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Overwrite bronze with a snapshot.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Extract the ERP tables into bronze.mv_* incrementally by ModifiedAt (or --full): the
    Dagster assets bronze/mv_*."""
    data.extract(_settings(), table, full=full, as_json=as_json)


Names = list[str] | None


@app.command("transform")
def transform_command(
    layer: Annotated[Names, typer.Option(help="silver and/or gold; default: both.")] = None,
    step: Annotated[Names, typer.Option(help="Only these steps, e.g. silver.events.")] = None,
    start: Annotated[Day, day("--from", help="Backfill from this date.")] = None,
    end: Annotated[Day, day("--to", help="Backfill to this date (inclusive).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Rebuild from the whole history.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Build silver and gold with Spark (the Dagster assets of spark_jobs/steps.py): what
    changed upstream, or a date range (--from/--to: a partition range).

    Every batch is staged and validated with its Great Expectations suite before it replaces
    the table's partitions; a failing batch is left in staging and the command exits 1."""
    days = console.date_range(start, end)
    data.transform(_settings(), layer, step, days=days, full=full, as_json=as_json)


@marts_app.command("build")
def marts_build(
    select: Annotated[str | None, typer.Option(help="dbt selection, e.g. +mart_rfm.")] = None,
    as_of: Annotated[Day, day("--as-of", help="RFM run date [latest sale].")] = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild incremental models from scratch.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """`dbt build` the marts into a new warehouse file and publish it atomically (the Dagster
    dbt assets marts/*). Readers keep querying the previous version meanwhile; if a model or
    test fails nothing is published and the command exits 1."""
    data.marts_build(_settings(), select, as_of=as_of, full_refresh=full_refresh, as_json=as_json)


@marts_app.command("status")
def marts_status(as_json: JsonOption = False) -> None:
    """The published warehouse build and the builds kept for rollback."""
    data.marts_status(_settings(), as_json)


@marts_app.command("publish")
def marts_publish(build_id: Annotated[str, typer.Argument(help="A kept build id.")]) -> None:
    """Point the warehouse at a kept build (a rollback), atomically."""
    data.marts_publish(_settings(), build_id)


@ml_app.command("train")
def ml_train(
    part: Annotated[
        Names,
        typer.Option(
            help="recommenders, customers (segments, churn, CLV) and/or intent (purchase intent)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Train on gold with an offline time-split evaluation; write the recommendations, scores,
    evaluations and model versions to gold (the Dagster ml assets; docs/ml.md)."""
    data.ml_train(_settings(), part, as_json=as_json)


@ml_app.command("publish")
def ml_publish_command(as_json: JsonOption = False) -> None:
    """Publish the serving snapshot the recommendation API loads (the Dagster asset
    serving/snapshot; `ml train` publishes one too)."""
    data.ml_publish(_settings(), as_json)


@ml_app.command("experiments")
def ml_experiments_command(
    evaluate: Annotated[
        bool,
        typer.Option(
            "--evaluate",
            help="Compute every experiment's results and decision from the exposures in gold, "
            "record a concluded one and publish the serving snapshot (the assets the "
            "experiments sensor runs).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check the A/B experiments declared in EXPERIMENTS_DIR (one YAML each) and list them;
    exit 2 naming the file and the field when one is wrong (docs/experiments.md)."""
    data.ml_experiments(_settings(), as_json, evaluate)


@ml_app.command("drift")
def ml_drift_command(as_json: JsonOption = False) -> None:
    """The models' drift report: each monitored model's inputs and scores on the newest data
    against its training data (population stability index), appended to gold.model_drift;
    exit 1 when a score drifted past DRIFT_PSI_THRESHOLD (docs/ml.md)."""
    data.ml_drift(_settings(), as_json)


@bi_app.command("refresh")
def bi_refresh(as_json: JsonOption = False) -> None:
    """Rebuild the live file (real-time KPIs, data quality) the dashboards read from the Delta
    tables (the Dagster asset bi/live_warehouse); published atomically like the warehouse."""
    data.bi_refresh(_settings(), as_json)


def main() -> None:  # pragma: no cover - console entry point convenience
    app(prog_name="lakehouse")
