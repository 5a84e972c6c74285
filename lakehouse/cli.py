"""The `lakehouse` command line."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from generator.world import PRESETS, Scale
from lakehouse.services import ServiceError, ServiceManager, ServiceStatus
from lakehouse.settings import Settings, SettingsError, load_settings, mask_password

app = typer.Typer(
    name="lakehouse",
    help="Retail Lakehouse: run the embedded platform and its pipelines.",
    no_args_is_help=True,
    add_completion=False,
)
services_app = typer.Typer(
    help="The embedded Kafka broker (tansu) and Spark Connect server (Sail).",
    no_args_is_help=True,
)
app.add_typer(services_app, name="services")

out = Console()
err = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
T = TypeVar("T")


@app.callback()
def _main() -> None:
    # Client libraries log every refused connection; the CLI reports failures itself.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "py4j", "pyspark"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _run(action: Callable[[], T]) -> T:
    """Run an action, turning our expected failures into one red line and exit code 1."""
    try:
        return action()
    except ServiceError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        raise typer.Exit(1) from None


def _print_statuses(statuses: list[ServiceStatus], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"services": [s.to_dict() for s in statuses]}, indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("service", "endpoint", "mode", "pid", "rss", "health", "detail"):
        table.add_column(column)
    for s in statuses:
        health = "[green]healthy[/green]" if s.healthy else "[red]down[/red]"
        table.add_row(
            s.title,
            s.endpoint,
            "embedded" if s.embedded else "external",
            str(s.pid or "-"),
            f"{s.rss_mb:.0f} MB" if s.rss_mb is not None else "-",
            health,
            s.detail + (f" in {s.startup_seconds:.1f}s" if s.started else ""),
        )
    out.print(table)
    logs = [s.log for s in statuses if s.log]
    if logs:
        out.print(f"logs: {', '.join(logs)}", highlight=False)


def _progress_lines(as_json: bool) -> Callable[[str], None]:
    """Dim progress lines on stderr, none with --json."""
    return (lambda _: None) if as_json else (lambda msg: err.print(f"[dim]{msg}…[/dim]"))


def _print_health(statuses: list[ServiceStatus], as_json: bool) -> None:
    """Print the statuses; exit 1 if any service is not healthy."""
    _print_statuses(statuses, as_json)
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)


@services_app.command("up")
def services_up(as_json: JsonOption = False) -> None:
    """Start the embedded services (idempotent) and wait until they are healthy."""
    manager = ServiceManager(_settings())
    say = _progress_lines(as_json)
    statuses = _run(lambda: manager.up(progress=say))
    _print_health(statuses, as_json)


@services_app.command("down")
def services_down(as_json: JsonOption = False) -> None:
    """Stop the embedded services started from this data root (by pid)."""
    statuses = _run(ServiceManager(_settings()).down)
    _print_statuses(statuses, as_json)


@services_app.command("status")
def services_status(as_json: JsonOption = False) -> None:
    """Show each service, its endpoint, pid, memory and health. Exit code 1 if any is down."""
    statuses = _run(ServiceManager(_settings()).status)
    _print_health(statuses, as_json)


PRESET_HELP = "World size: tiny, demo (~1 M events), medium (~10 M), large (~100 M)."


def _scale(
    preset: str,
    customers: int | None,
    products: int | None,
    days: int | None,
    events: int | None,
    seed: int | None,
    start: datetime.datetime | None,
) -> Scale:
    if preset not in PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    overrides = {
        name: value
        for name, value in {
            "customers": customers,
            "products": products,
            "days": days,
            "events": events,
            "seed": seed,
            "start": start.date() if start else None,
        }.items()
        if value is not None
    }
    try:
        return dataclasses.replace(PRESETS[preset], **overrides)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _day_index(scale: Scale, when: datetime.datetime | None, option: str) -> int | None:
    if when is None:
        return None
    index = (when.date() - scale.start).days
    if not 0 <= index <= scale.days:
        raise typer.BadParameter(
            f"{option} {when.date()} is outside the simulated window "
            f"{scale.start} .. {scale.end} (exclusive)"
        )
    return index


@app.command("generate")
def generate_command(
    preset: Annotated[str, typer.Option(help=PRESET_HELP)] = "demo",
    customers: Annotated[int | None, typer.Option(help="Override the preset.")] = None,
    products: Annotated[int | None, typer.Option(help="Override the preset.")] = None,
    days: Annotated[int | None, typer.Option(help="Simulated days (override).")] = None,
    events: Annotated[int | None, typer.Option(help="Target event count (override).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (override).")] = None,
    start: Annotated[
        datetime.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="First simulated day.")
    ] = None,
    until: Annotated[
        datetime.datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Write only the days before this date; a later "
            "run continues from there (so master-data changes appear over time).",
        ),
    ] = None,
    no_events: Annotated[bool, typer.Option("--no-events", help="Skip the event files.")] = False,
    reset: Annotated[bool, typer.Option(help="Drop and recreate the ERP tables first.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Generate the ERP database (MV_* tables), the clickstream event files and the ground truth."""
    from generator.erp import GeneratorMismatch
    from generator.generate import generate

    settings = _settings()
    scale = _scale(preset, customers, products, days, events, seed, start)
    until_day = _day_index(scale, until, "--until")
    with _day_progress(scale.days if until_day is None else until_day, as_json) as advance:
        try:
            report = generate(
                scale,
                settings.erp_db_url,
                settings.generated_dir,
                until_day=until_day,
                write_events=not no_events,
                reset=reset,
                on_day=lambda batch: advance(batch.n_events),
            )
        except GeneratorMismatch as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    out.print(
        f"wrote {report.days_written} days ({report.days_skipped} already there): "
        f"{report.invoices_written:,} invoices, {report.lines_written:,} lines, "
        f"{report.events_written:,} events in {report.seconds:.1f}s "
        f"({report.events_per_second:,.0f} events/s, peak RSS {report.peak_rss_mb:.0f} MB)",
        highlight=False,
    )
    out.print(f"ERP database: {mask_password(report.erp_db_url)}", highlight=False)
    if report.events_dir:
        out.print(f"event files:  {report.events_dir}", highlight=False)
    if report.ground_truth_dir:
        out.print(f"ground truth: {report.ground_truth_dir}", highlight=False)


@app.command("produce")
def produce_command(
    topic: Annotated[str | None, typer.Option(help="Default: KAFKA_EVENTS_TOPIC.")] = None,
    rate: Annotated[float, typer.Option(min=0, help="Messages per second; 0 = unthrottled.")] = 0,
    events: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds.")
    ] = None,
    start: Annotated[
        datetime.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="First simulated day to send."),
    ] = None,
    days: Annotated[int | None, typer.Option(min=1, help="Simulated days to send.")] = None,
    key: Annotated[str, typer.Option(help="Message key: session or customer.")] = "session",
    duplicates: Annotated[float, typer.Option(help="Share of events sent twice.")] = 0.0,
    late: Annotated[float, typer.Option(help="Share of events sent late, out of order.")] = 0.0,
    malformed: Annotated[float, typer.Option(help="Extra malformed messages, share.")] = 0.0,
    drift: Annotated[float, typer.Option(help="Share with an extra field, version 1.1.")] = 0.0,
    orphans: Annotated[
        float, typer.Option(help="Extra events with unknown product/customer ids, share.")
    ] = 0.0,
    future: Annotated[
        float, typer.Option(help="Extra events 1-30 days ahead of the wall clock, share.")
    ] = 0.0,
    negative_quantities: Annotated[
        float, typer.Option(help="Extra cart/purchase events with quantity < 0, share.")
    ] = 0.0,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions if creating the topic.")] = 6,
    preset: Annotated[
        str | None, typer.Option(help="World size when nothing was generated. " + PRESET_HELP)
    ] = None,
    ack_log: Annotated[
        Path | None, typer.Option(help="CSV of acknowledged messages (partition, offset, kind).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Send the simulated clickstream to Kafka, optionally with faults injected.

    Uses the world of the last `lakehouse generate` (so purchases match ERP invoices), or a
    preset if nothing was generated."""
    from streaming.producer import Faults, produce, simulated_messages

    settings = _settings()
    if key not in ("session", "customer"):
        raise typer.BadParameter(f"--key must be session or customer, got {key!r}")
    manifest = settings.generated_dir / "manifest.json"
    if preset is None and manifest.exists():
        scale = Scale.from_dict(json.loads(manifest.read_text())["scale"])
    else:
        scale = _scale(preset or "demo", None, None, None, None, None, None)
    first_day = _day_index(scale, start, "--start") or 0
    try:
        faults = Faults(
            duplicates=duplicates,
            late=late,
            malformed=malformed,
            drift=drift,
            orphans=orphans,
            future=future,
            negative_quantities=negative_quantities,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    window = scale.days if days is None else min(days, scale.days - first_day)
    expected = events or int(scale.events * window / scale.days)
    progress = _progress(as_json)
    task = progress.add_task("producing", total=expected)
    with _kafka_errors(settings), progress:
        report = produce(
            settings.kafka_bootstrap_servers,
            topic or settings.events_topic,
            simulated_messages(scale, first_day, days, key_by=key),
            faults=faults,
            rate=rate,
            max_events=events,
            duration=duration,
            partitions=partitions,
            ack_log=ack_log,
            on_progress=lambda r: progress.update(task, completed=r.events),
        )
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    out.print(
        f"sent {report.events:,} events ({report.messages:,} messages incl. faults) to "
        f"{report.topic} in {report.seconds:.1f}s = {report.events_per_second:,.0f} msgs/s; "
        f"acknowledged {report.acknowledged:,}",
        highlight=False,
    )
    out.print(
        f"simulated time {report.first_event_time} .. {report.last_event_time}", highlight=False
    )
    faults_sent = {k: v for k, v in report.kinds.items() if k != "valid"}
    if faults_sent:
        out.print(f"faults: {faults_sent}", highlight=False)


def _progress(quiet: bool, unit: str = "events") -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
    )


@contextlib.contextmanager
def _day_progress(total_days: int, quiet: bool):
    progress = Progress(
        TextColumn("simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days"),
        TextColumn("{task.fields[events]:,} events"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
    )
    task = progress.add_task("days", total=total_days, events=0)
    counted = [0]

    def advance(n_events: int) -> None:
        counted[0] += n_events
        progress.update(task, advance=1, events=counted[0])

    with progress:
        yield advance


@app.command("ingest")
def ingest_command(
    topic: Annotated[str | None, typer.Option(help="Default: KAFKA_EVENTS_TOPIC.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep ingesting until Ctrl-C / SIGTERM.")
    ] = False,
    status: Annotated[
        bool, typer.Option("--status", help="Show offsets and lag; ingest nothing.")
    ] = False,
    group: Annotated[
        str, typer.Option(help="Kafka consumer group [default: lakehouse-bronze-<topic>].")
    ] = "",
    max_events: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many messages.")
    ] = None,
    max_seconds: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds.")
    ] = None,
    batch_events: Annotated[int, typer.Option(min=1, help="Messages per Delta commit.")] = 50_000,
    batch_seconds: Annotated[
        float, typer.Option(min=0.05, help="Longest a message waits for its commit.")
    ] = 2.0,
    session_timeout_ms: Annotated[
        int, typer.Option(min=1000, help="Consumer-group session timeout.")
    ] = 6000,
    as_json: JsonOption = False,
) -> None:
    """Move the clickstream topic into bronze.events (exactly once; bad messages to
    bronze.events_dead_letter).

    Without --follow it ingests what is on the topic and stops; with --follow it keeps going.
    --status shows the offsets recorded in bronze, the broker's log end and the lag."""
    from streaming.ingest import IngestOptions, ingest, ingest_status, status_path

    settings = _settings()
    topic = topic or settings.events_topic
    if status and follow:
        raise typer.BadParameter("--status and --follow cannot be combined")
    with _kafka_errors(settings):
        if status:
            _print_ingest_status(ingest_status(settings, topic), as_json)
            return
        options = IngestOptions(
            topic=topic,
            group_id=group,
            batch_max_events=batch_events,
            batch_max_seconds=batch_seconds,
            max_events=max_events,
            max_seconds=max_seconds,
            session_timeout_ms=session_timeout_ms,
        )
        progress = Progress(
            TextColumn("ingesting {task.fields[topic]}"),
            TextColumn("{task.fields[events]:,} events, {task.fields[dead]:,} dead letters"),
            TextColumn("lag {task.fields[lag]:,}"),
            TimeElapsedColumn(),
            console=err,
            disable=as_json,
        )
        task = progress.add_task("ingest", total=None, topic=topic, events=0, dead=0, lag=0)

        def on_batch(r) -> None:
            lag = sum(r.lag.values())
            progress.update(task, events=r.events_written, dead=r.dead_letters_written, lag=lag)

        with progress:
            report = ingest(
                settings,
                options,
                follow=follow,
                on_batch=on_batch,
                status_file=status_path(settings, topic) if follow else None,
            )
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    out.print(
        f"ingested {report.messages:,} messages from {topic} in {report.seconds:.1f}s "
        f"({report.events_per_second:,.0f} msgs/s after joining the group in "
        f"{report.joined_after or 0:.1f}s): {report.events_written:,} events, "
        f"{report.dead_letters_written:,} dead letters, {report.batches} commits; "
        f"bronze.events at version {report.events_version}",
        highlight=False,
    )


@contextlib.contextmanager
def _kafka_errors(settings: Settings) -> Iterator[None]:
    """A Kafka failure is one red line naming the brokers, and exit code 1."""
    from confluent_kafka import KafkaException

    try:
        yield
    except KafkaException as exc:
        err.print(
            f"[red]error:[/red] Kafka at {settings.kafka_bootstrap_servers}: {exc}", highlight=False
        )
        raise typer.Exit(1) from None


def _print_ingest_status(status: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, indent=2))
        return
    table = Table(title=f"{status['topic']} → bronze.events (version {status['events_version']})")
    for column in ("partition", "next offset", "log end", "lag"):
        table.add_column(column, justify="right")
    for row in status["partitions"]:
        cells = (row["partition"], row["next_offset"], row["log_end"], row["lag"])
        table.add_row(*("?" if c is None else f"{c:,}" for c in cells))
    out.print(table)
    for follower in status["followers"]:
        out.print(
            f"follower pid {follower['pid']}: {follower['events_written']:,} events, "
            f"{follower['events_per_second']:,.0f} msgs/s, last commit {follower['last_batch_at']}",
            highlight=False,
        )
    if not status["followers"]:
        out.print("no `lakehouse ingest --follow` is running for this topic", style="dim")


@app.command("extract")
def extract_command(
    table: Annotated[
        list[str] | None, typer.Option(help="ERP table(s) to extract; default: all.")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Full snapshot: overwrite bronze with the table.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Extract the ERP tables into bronze.mv_* incrementally by ModifiedAt (or --full)."""
    from lakehouse.erp_extract import ERP_TABLES, ErpSourceError, extract_table

    settings = _settings()
    tables = table or list(ERP_TABLES)
    unknown = [t for t in tables if t not in ERP_TABLES]
    if unknown:
        raise typer.BadParameter(
            f"unknown ERP table(s) {', '.join(unknown)}; expected {', '.join(ERP_TABLES)}",
            param_hint="--table",
        )
    reports = []
    progress = _progress(as_json, unit="tables")
    task = progress.add_task("extracting", total=len(tables))
    try:
        with progress:
            for name in tables:
                reports.append(extract_table(settings, name, full=full))
                progress.advance(task)
    except ErpSourceError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
        return
    summary = Table(title=f"ERP → bronze ({'full snapshot' if full else 'incremental'})")
    for column in ("table", "read", "written", "quarantined", "watermark", "seconds"):
        summary.add_column(column, justify="left" if column in ("table", "watermark") else "right")
    for r in reports:
        summary.add_row(
            r.bronze_table,
            f"{r.rows_read:,}",
            f"{r.rows_written:,}",
            f"{r.rows_quarantined:,}",
            r.watermark_after or "-",
            f"{r.seconds:.2f}",
        )
    out.print(summary)


@app.command("transform")
def transform_command(
    layer: Annotated[
        list[str] | None, typer.Option(help="silver and/or gold; default: both.")
    ] = None,
    step: Annotated[
        list[str] | None, typer.Option(help="Only these steps, e.g. silver.events.")
    ] = None,
    start: Annotated[
        datetime.datetime | None,
        typer.Option("--from", formats=["%Y-%m-%d"], help="Backfill from this date."),
    ] = None,
    end: Annotated[
        datetime.datetime | None,
        typer.Option("--to", formats=["%Y-%m-%d"], help="Backfill to this date (inclusive)."),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Rebuild from the sources' whole history.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Build silver and gold with Spark: only what changed upstream, or a date range (--from/--to).

    Every batch is staged and validated with its Great Expectations suite before it replaces the
    table's partitions; a failing batch is left in staging and the command exits 1."""
    from spark_jobs.pipeline import GateFailed, MissingInput, Pipeline
    from spark_jobs.steps import STEPS, run_step

    layers = layer or ["silver", "gold"]
    bad = [name for name in layers if name not in ("silver", "gold")]
    if bad:
        raise typer.BadParameter(f"unknown layer {', '.join(bad)}", param_hint="--layer")
    steps = step or [s for s in STEPS if s.split(".")[0] in layers]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise typer.BadParameter(
            f"unknown step(s) {', '.join(unknown)}; expected {', '.join(STEPS)}",
            param_hint="--step",
        )
    if (start is None) != (end is None):
        raise typer.BadParameter("--from and --to go together", param_hint="--from/--to")
    dates = None
    if start and end:
        if end < start:
            raise typer.BadParameter(f"--to {end:%Y-%m-%d} is before --from", param_hint="--to")
        dates = {(start + datetime.timedelta(days=k)).date() for k in range((end - start).days + 1)}
    settings = _settings()
    results = []
    progress = _progress(as_json, unit="steps")
    task = progress.add_task("transforming", total=len(steps))
    failed = None
    with _spark_errors(settings) as spark, progress:
        pipeline = Pipeline(
            spark,
            settings,
            on_batch=lambda table, i, n, part: progress.update(
                task, description=f"{table} batch {i}/{n} ({min(part)}..{max(part)})"
            ),
        )
        for name in steps:
            progress.update(task, description=name)
            try:
                results += run_step(pipeline, name, dates=dates, full=full)
            except GateFailed as exc:
                results.append(exc.result)
                failed = exc
                break
            except MissingInput as exc:
                err.print(f"[red]error:[/red] {exc}", highlight=False)
                raise typer.Exit(1) from None
            progress.advance(task)
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        summary = Table(title="silver / gold")
        for column in ("table", "status", "partitions", "rows", "quarantined", "checks", "s"):
            summary.add_column(
                column, justify="left" if column in ("table", "status", "checks") else "right"
            )
        for r in results:
            status = "skipped" if r.skipped else "published" if r.published else "[red]FAILED[/red]"
            summary.add_row(
                r.table,
                status,
                "all" if r.dates is None else str(len(r.dates)),
                f"{r.rows:,}",
                f"{r.quarantined:,}",
                r.report.summary() if r.report else "-",
                f"{r.seconds:.1f}",
            )
        out.print(summary)
    if failed is not None:
        err.print(
            f"[red]error:[/red] {failed}; the batch stays in staging at "
            f"{failed.result.report.staging_uri}",
            highlight=False,
        )
        raise typer.Exit(1)


@contextlib.contextmanager
def _spark_errors(settings: Settings) -> Iterator:
    """A Spark session, with a plain message instead of a traceback when the server is down."""
    from lakehouse.services import tcp_reachable
    from lakehouse.spark import spark_session

    host, port = settings.spark_endpoint
    if not tcp_reachable(host, port):
        err.print(
            f"[red]error:[/red] no Spark Connect server at {settings.spark_remote}; "
            "start the embedded one with `lakehouse services up` or set SPARK_REMOTE",
            highlight=False,
        )
        raise typer.Exit(1)
    spark = spark_session(settings)
    try:
        yield spark
    finally:
        spark.stop()


marts_app = typer.Typer(
    help="The dbt marts in the DuckDB warehouse: build, publish, inspect.", no_args_is_help=True
)
app.add_typer(marts_app, name="marts")


@marts_app.command("build")
def marts_build(
    select: Annotated[
        str | None, typer.Option(help="dbt selection, e.g. +mart_customer_rfm.")
    ] = None,
    as_of: Annotated[
        datetime.datetime | None,
        typer.Option("--as-of", formats=["%Y-%m-%d"], help="RFM run date (default: latest sale)."),
    ] = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild incremental models from scratch.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """`dbt build` the marts into a new warehouse file and publish it atomically.

    Readers keep querying the previous version meanwhile; if a model or test fails nothing is
    published and the command exits 1."""
    from warehouse.marts import build_marts
    from warehouse.publish import WarehouseError

    settings = _settings()
    args = ["build"]
    if select:
        # tests of selected models may reach unselected ones, absent from a first build
        args += ["--select", select, "--indirect-selection", "cautious"]
    if full_refresh:
        args.append("--full-refresh")
    if as_of:
        args += ["--vars", json.dumps({"as_of_date": f"{as_of:%Y-%m-%d}"})]
    echo = (
        (lambda _line: None)
        if as_json
        else (lambda line: err.print(line, style="dim", highlight=False, markup=False))
    )
    try:
        result = build_marts(settings, dbt_args=args, echo=echo)
    except WarehouseError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    out.print(
        f"[green]published[/green] build {result.build_id}: {len(result.models)} tables, "
        f"{result.tests_passed} tests passed, {result.seconds:.1f}s → {result.published}",
        highlight=False,
    )


@marts_app.command("status")
def marts_status(as_json: JsonOption = False) -> None:
    """The published warehouse build and the builds kept for rollback."""
    from warehouse.publish import Warehouse

    warehouse = Warehouse(_settings().warehouse_path)
    published = warehouse.published()
    status = {
        "warehouse": str(warehouse.current),
        "published": published.build_id if published else None,
        "kept": [b.build_id for b in warehouse.builds()],
    }
    if as_json:
        print(json.dumps(status, indent=2))
        return
    out.print(f"warehouse  {status['warehouse']}", highlight=False)
    out.print(f"published  {status['published'] or '(nothing yet)'}", highlight=False)
    out.print(f"kept       {', '.join(status['kept']) or '-'}", highlight=False)


@marts_app.command("publish")
def marts_publish(build_id: Annotated[str, typer.Argument(help="A kept build id.")]) -> None:
    """Point the warehouse at a kept build (a rollback), atomically."""
    from warehouse.publish import Warehouse, WarehouseError

    try:
        build = Warehouse(_settings().warehouse_path).publish(build_id)
    except WarehouseError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    out.print(f"published build {build.build_id}", highlight=False)


ml_app = typer.Typer(
    help="Recommenders and customer models: train, evaluate, pick the champion.",
    no_args_is_help=True,
)
app.add_typer(ml_app, name="ml")
ML_PARTS = ("recommenders", "customers")


@ml_app.command("train")
def ml_train(
    part: Annotated[
        list[str] | None,
        typer.Option(help="recommenders and/or customers (segments, churn, CLV); default both."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Train on gold with an offline time-split evaluation; write the recommendations, scores,
    evaluations and model versions to gold (see docs/ml.md)."""
    from ml.training import NotEnoughData, train_customer_models, train_recommenders

    parts = part or list(ML_PARTS)
    unknown = [p for p in parts if p not in ML_PARTS]
    if unknown:
        raise typer.BadParameter(
            f"unknown part(s) {', '.join(unknown)}; expected {', '.join(ML_PARTS)}",
            param_hint="--part",
        )
    settings = _settings()
    progress = (lambda _: None) if as_json else _dim
    runs = {"recommenders": train_recommenders, "customers": train_customer_models}
    reports = {}
    with _spark_errors(settings) as spark:
        for name in parts:
            try:
                reports[name] = runs[name](spark, settings, progress)
            except NotEnoughData as exc:
                err.print(f"[red]error:[/red] {exc}", highlight=False)
                raise typer.Exit(1) from None
    if as_json:
        print(json.dumps({k: r.to_dict() for k, r in reports.items()}, indent=2, default=str))
        return
    if "recommenders" in reports:
        r = reports["recommenders"]
        metric = settings.ml_champion_metric
        table = Table(
            title=f"recommenders (trained to {r.windows['train_end']}, "
            f"tested on {r.windows['test_days']} days)"
        )
        for column in ("model", metric, "recall@10", "hit_rate@10", "coverage@10", "truth"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for e in r.evaluations:
            table.add_row(
                e["model"] + (" (champion)" if e["model"] == r.champion else ""),
                f"{e[metric]:.4f}",
                f"{e['recall@10']:.4f}",
                f"{e['hit_rate@10']:.4f}",
                f"{e['coverage@10']:.3f}",
                f"{e['truth_top_category_share']:.3f}" if "truth_top_category_share" in e else "-",
            )
        out.print(table)
    if "customers" in reports:
        r = reports["customers"]
        for e in r.evaluations:
            if e["task"] == "clv":
                better = "better" if e["mae_improvement"] >= 0 else "worse"
                out.print(
                    f"clv: MAE {e['mae']:,.0f} vs baseline {e['mae_baseline']:,.0f} "
                    f"({abs(e['mae_improvement']):.1%} {better}), "
                    f"window {r.windows['churn_days']} days",
                    highlight=False,
                )
            else:
                out.print(
                    f"{e['task']}: ROC-AUC {e['roc_auc']:.3f} vs baseline "
                    f"{e['baseline_roc_auc']:.3f}, PR-AUC {e['pr_auc']:.3f}, F1 {e['f1']:.3f}",
                    highlight=False,
                )
    for r in reports.values():
        out.print(", ".join(f"{t} {n:,} rows" for t, n in r.tables.items()), style="dim")


dagster_app = typer.Typer(
    help="The Dagster UI (dagster dev: webserver, daemon, code server).", no_args_is_help=True
)
app.add_typer(dagster_app, name="dagster")


@dagster_app.command("up")
def dagster_up(as_json: JsonOption = False) -> None:
    """Write the instance configuration, migrate it, and start `dagster dev` on 127.0.0.1
    (idempotent); healthy once the code location has loaded."""
    from lakehouse.dagster_ui import start_dagster

    settings = _settings()
    say = _progress_lines(as_json)
    statuses = _run(lambda: start_dagster(settings, progress=say))
    _print_health(statuses, as_json)


@dagster_app.command("down")
def dagster_down(as_json: JsonOption = False) -> None:
    """Stop the embedded Dagster UI (by pid)."""
    from lakehouse.dagster_ui import dagster_manager

    _print_statuses(_run(dagster_manager(_settings()).down), as_json)


@dagster_app.command("status")
def dagster_status(as_json: JsonOption = False) -> None:
    """The Dagster UI's endpoint, pid, memory and health. Exit code 1 if it is down."""
    from lakehouse.dagster_ui import dagster_manager

    statuses = _run(dagster_manager(_settings()).status)
    _print_health(statuses, as_json)


bi_app = typer.Typer(
    help="Superset over the warehouse: dashboards as code, SQL Lab.", no_args_is_help=True
)
app.add_typer(bi_app, name="bi")


@bi_app.command("up")
def bi_up(as_json: JsonOption = False) -> None:
    """Migrate Superset's metadata, create the admin, apply the dashboards from the YAML under
    warehouse/superset/dashboards and start the web server (idempotent)."""
    from lakehouse.bi import Bi

    settings = _settings()
    say = _progress_lines(as_json)
    report = _run(lambda: Bi(settings).up(progress=say))
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _print_bi(report)
    if report.server is not None and not report.server.healthy:
        raise typer.Exit(1)


def _print_bi(report) -> None:  # noqa: ANN001 - lakehouse.bi.BiReport, imported lazily
    provisioned = report.provisioned
    out.print(
        f"Superset: [bold]{report.url}[/bold]  user [bold]{report.username}[/bold]",
        highlight=False,
    )
    if report.new_password:
        out.print(
            f"  password (generated, shown once): [bold]{report.new_password}[/bold]",
            highlight=False,
        )
    if report.password_file:
        out.print(f"  password kept in {report.password_file}", highlight=False)
    out.print(
        f"  {len(provisioned['dashboards'])} dashboards, {provisioned['charts']} charts, "
        f"{provisioned['datasets']} datasets, {provisioned['saved_queries']} saved queries",
        highlight=False,
    )
    for dashboard in provisioned["dashboards"]:
        out.print(f"  {report.url}/superset/dashboard/{dashboard['slug']}/", highlight=False)
    for missing in provisioned["datasets_without_table"]:
        err.print(f"[yellow]not built yet:[/yellow] {missing}", highlight=False)
    steps = ", ".join(f"{name} {sec:.1f}s" for name, sec in report.steps.items())
    out.print(f"[dim]{steps}[/dim]", highlight=False)


@bi_app.command("refresh")
def bi_refresh(as_json: JsonOption = False) -> None:
    """Rebuild the live file (real-time KPIs, data quality) the dashboards read, from the
    Delta tables; published atomically like the warehouse."""
    from warehouse.live import refresh_live

    result = refresh_live(_settings())
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return
    rows = ", ".join(f"{table} {n:,}" for table, n in result.rows.items())
    out.print(
        f"live file {result.path} refreshed in {result.seconds:.1f}s: {rows}", highlight=False
    )


@bi_app.command("down")
def bi_down(as_json: JsonOption = False) -> None:
    """Stop the embedded Superset web server (by pid)."""
    from lakehouse.bi import Bi

    _print_statuses([_run(Bi(_settings()).down)], as_json)


@bi_app.command("status")
def bi_status(as_json: JsonOption = False) -> None:
    """Superset's endpoint, pid, memory and health. Exit code 1 if it is down."""
    from lakehouse.bi import Bi

    status = _run(Bi(_settings()).status)
    _print_statuses([status], as_json)
    if not status.healthy:
        raise typer.Exit(1)


@app.command("settings")
def show_settings(as_json: JsonOption = False) -> None:
    """Print the resolved configuration (environment variables over embedded defaults)."""
    values = _settings().describe()
    if as_json:
        print(json.dumps(values, indent=2))
        return
    for key, value in values.items():
        out.print(f"[bold]{key:<24}[/bold] {value}", highlight=False)


@app.command("demo")
def demo(
    preset: Annotated[str, typer.Option(help=PRESET_HELP)] = "demo",
) -> None:
    """Run the platform end to end on embedded defaults and print where everything is.

    Idempotent: a second run reuses the running services, the generated ERP database and the
    clickstream already on the topic."""
    from lakehouse import smoke

    settings = _settings()
    scale = _scale(preset, None, None, None, None, None, None)
    started = time.monotonic()
    steps = [
        ("Starting the embedded services", lambda: ServiceManager(settings).up(progress=_dim)),
        ("Sending a message through the broker", lambda: smoke.broker_round_trip(settings)),
        (
            "Writing and reading a Delta table via Spark Connect",
            lambda: smoke.delta_round_trip(settings),
        ),
        (
            f"Generating the {preset} ERP database and ground truth",
            lambda: _demo_generate(settings, scale),
        ),
        (f"Producing the {preset} clickstream to Kafka", lambda: _demo_produce(settings, scale)),
        (
            "Materialising the bronze assets with Dagster (Kafka and ERP → Delta)",
            lambda: _demo_bronze(settings),
        ),
        (
            "Building silver and gold with Spark (each batch gated by Great Expectations)",
            lambda: _demo_silver_gold(settings),
        ),
        (
            "Training the recommenders and customer models (champion picked offline)",
            lambda: _demo_ml(settings),
        ),
        ("Building the marts with dbt and publishing the warehouse", lambda: _demo_marts(settings)),
        ("Starting Superset with the dashboards", lambda: _demo_bi(settings)),
        ("Starting the Dagster UI", lambda: _demo_dagster(settings)),
    ]
    results = []
    for number, (title, step) in enumerate(steps, start=1):
        out.print(f"[bold cyan][{number}/{len(steps)}][/bold cyan] {title}")
        step_started = time.monotonic()
        try:
            results.append(_run(step))
        except typer.Exit:
            raise
        except Exception as exc:  # noqa: BLE001 - report any failure of a demo step plainly
            err.print(f"[red]error:[/red] {title} failed: {exc}", highlight=False)
            raise typer.Exit(1) from None
        out.print(f"      done in {time.monotonic() - step_started:.1f}s", style="dim")

    statuses, kafka, delta, generated, produced, bronze, silver_gold, ml, marts, bi, ui = results
    _print_statuses(statuses, as_json=False)
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
    out.print(f"erp:    {generated}", highlight=False)
    out.print(f"kafka:  {produced}", highlight=False)
    out.print(f"bronze: {bronze}", highlight=False)
    out.print(f"silver/gold: {silver_gold}", highlight=False)
    out.print(f"models: {ml}", highlight=False)
    out.print(f"marts:  {marts}", highlight=False)
    out.print()
    _print_bi(bi)
    out.print(f"\nDagster UI: [bold]{ui}[/bold]", highlight=False)
    out.print("\n[bold]Where everything is[/bold]")
    for key, value in settings.describe().items():
        out.print(f"  {key:<24} {value}", highlight=False)
    out.print(
        f"\n[green]Demo finished in {time.monotonic() - started:.1f}s.[/green] "
        "Services keep running; stop them with `.venv/bin/lakehouse services down`, "
        "`.venv/bin/lakehouse bi down` and `.venv/bin/lakehouse dagster down`."
    )


def _demo_generate(settings: Settings, scale: Scale) -> str:
    from generator.generate import generate

    with _day_progress(scale.days, quiet=False) as advance:
        report = generate(
            scale,
            settings.erp_db_url,
            settings.generated_dir,
            write_events=False,
            on_day=lambda b: advance(b.n_events),
        )
    if report.days_written == 0:
        return (
            f"already generated ({report.days_skipped} days) in {mask_password(report.erp_db_url)}"
        )
    return (
        f"{report.invoices_written:,} invoices, {report.lines_written:,} lines in "
        f"{mask_password(report.erp_db_url)}"
    )


# A little bad input, all of it extra messages (the clean clickstream is unchanged), so the
# quality gates and the data-quality dashboard have something to show.
DEMO_FAULTS = dict(
    duplicates=0.002, malformed=0.0005, orphans=0.0005, future=0.0002, negative_quantities=0.0005
)


def _demo_produce(settings: Settings, scale: Scale) -> str:
    from lakehouse.kafka import list_topics
    from streaming.producer import Faults, produce, simulated_messages

    topic = settings.events_topic
    marker = settings.generated_dir / f"produced-{topic}.json"
    if topic in list_topics(settings.kafka_bootstrap_servers) and marker.exists():
        return f"topic {topic} already holds the clickstream ({marker.read_text().strip()})"
    progress = _progress(quiet=False)
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


def _materialise(settings: Settings, groups: tuple[str, ...]) -> list:
    """Run the assets of `groups` in-process, recorded in the demo's Dagster instance; fail with
    the failing steps' errors (a failed blocking check included)."""
    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.lib.instance import write_instance_config
    from orchestration.lib.spark_steps import refresh_request

    write_instance_config(settings)
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name in groups]
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        job = defs.resolve_implicit_global_asset_job_def()
        quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        result = job.execute_in_process(
            run_config=quiet,
            instance=instance,
            asset_selection=keys,
            raise_on_error=False,
            **refresh_request(),
        )
    if not result.success:
        failures = [
            f"{e.step_key}: {e.event_specific_data.error.message.strip()}"
            for e in result.all_events
            if e.event_type_value == "STEP_FAILURE"
        ]
        raise RuntimeError("; ".join(failures) or "the run failed")
    return keys


def _demo_bronze(settings: Settings) -> str:
    from deltalake import DeltaTable

    bronze = _materialise(settings, ("bronze",))
    events = DeltaTable(settings.table_uri("bronze", "events"))
    dead = DeltaTable(settings.table_uri("bronze", "events_dead_letter"))
    return (
        f"{events.count():,} events (version {events.version()}), {dead.count():,} dead letters, "
        f"{len(bronze) - 2} ERP tables at {settings.table_uri('bronze', '')}"
    )


def _demo_silver_gold(settings: Settings) -> str:
    from deltalake import DeltaTable

    keys = _materialise(settings, ("silver", "gold"))
    facts = {
        name: DeltaTable(settings.table_uri("gold", name)).count()
        for name in ("fact_sales_line", "fact_events", "fact_sessions")
    }
    return f"{len(keys)} tables, each batch gated by Great Expectations; gold: " + ", ".join(
        f"{name} {rows:,} rows" for name, rows in facts.items()
    )


def _demo_ml(settings: Settings) -> str:
    from deltalake import DeltaTable

    _materialise(settings, ("ml",))
    evaluations = DeltaTable(settings.table_uri("gold", "model_evaluations")).to_pandas()
    latest = evaluations[evaluations["task"] == "recommendation"]
    latest = latest[latest["run_id"] == latest.sort_values("evaluated_at")["run_id"].iloc[-1]]
    metric = settings.ml_champion_metric
    score = latest[(latest["metric"] == metric) & (latest["population"] == "warm")]
    score = score.set_index("model")["value"]
    champion = latest.loc[latest["is_champion"], "model"].iloc[0]
    return (
        f"champion recommender {champion}: {metric} {score[champion]:.4f} vs popularity "
        f"{score['popularity']:.4f} ({score[champion] / score['popularity'] - 1:+.0%}); "
        "gold.customer_recommendations, customer_scores and model_evaluations written"
    )


def _demo_marts(settings: Settings) -> str:
    from warehouse.publish import Warehouse

    keys = _materialise(settings, ("marts",))
    warehouse = Warehouse(settings.warehouse_path)
    return (
        f"{len(keys)} dbt models, tested, published as build {warehouse.published().build_id} "
        f"at {warehouse.current} (open it read-only: duckdb -readonly {warehouse.current})"
    )


def _demo_bi(settings: Settings):  # noqa: ANN202 - lakehouse.bi.BiReport, imported lazily
    from lakehouse.bi import Bi
    from warehouse.live import refresh_live

    refresh_live(settings)
    return Bi(settings).up(progress=_dim)


def _demo_dagster(settings: Settings) -> str:
    from lakehouse.dagster_ui import start_dagster

    status = start_dagster(settings, progress=_dim)[0]
    loaded = (
        f"code location loaded in {status.startup_seconds:.1f}s"
        if status.started
        else "already running"
    )
    return f"{settings.dagster_url} ({loaded})"


def _dim(message: str) -> None:
    out.print(f"      {message}…", style="dim", highlight=False)


def main() -> None:  # pragma: no cover - console entry point convenience
    app(prog_name="lakehouse")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
