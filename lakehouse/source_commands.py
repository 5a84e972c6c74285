"""The bodies of `lakehouse generate` and `lakehouse produce`: the simulated ERP and website
that feed the platform's sources (they are not data steps: the ERP database and the Kafka topic
are where the pipelines start)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import typer

from lakehouse import console
from lakehouse.console import fail, out, print_json
from lakehouse.core.settings import Settings, mask_password

PRESET_HELP = "World size: tiny, demo (~1 M events), medium (~10 M), large (~100 M)."


def scale(preset: str, start: dt.datetime | None = None, **overrides: object) -> Any:
    """The preset's world (generator.world.Scale) with the options given."""
    from generator.world import PRESETS

    if preset not in PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    values = {k: v for k, v in overrides.items() if v is not None}
    if start is not None:
        values["start"] = start.date()
    try:
        return dataclasses.replace(PRESETS[preset], **values)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def day_index(world: Any, when: dt.datetime | None, option: str) -> int | None:
    if when is None:
        return None
    index = (when.date() - world.start).days
    if not 0 <= index <= world.days:
        raise typer.BadParameter(
            f"{option} {when.date()} is outside the simulated window "
            f"{world.start} .. {world.end} (exclusive)"
        )
    return index


def generate(
    settings: Settings,
    world: Any,
    until: dt.datetime | None,
    *,
    events: bool,
    reset: bool,
    as_json: bool,
) -> None:
    from generator.erp import GeneratorMismatch
    from generator.generate import generate

    until_day = day_index(world, until, "--until")
    with console.day_progress(world.days if until_day is None else until_day, as_json) as advance:
        try:
            report = generate(
                world,
                settings.erp_db_url,
                settings.generated_dir,
                until_day=until_day,
                write_events=events,
                reset=reset,
                on_day=lambda batch: advance(batch.n_events),
            )
        except GeneratorMismatch as exc:
            fail(str(exc))
    if as_json:
        print_json(report.to_dict())
        return
    out.print(
        f"wrote {report.days_written} days ({report.days_skipped} already there): "
        f"{report.invoices_written:,} invoices, {report.lines_written:,} lines, "
        f"{report.events_written:,} events in {report.seconds:.1f}s "
        f"({report.events_per_second:,.0f} events/s, peak RSS {report.peak_rss_mb:.0f} MB)",
        highlight=False,
    )
    out.print(f"ERP database: {mask_password(report.erp_db_url)}", highlight=False)
    for label, where in (
        ("event files", report.events_dir),
        ("ground truth", report.ground_truth_dir),
    ):
        if where:
            out.print(f"{label + ':':<13} {where}", highlight=False)


def generated_scale(settings: Settings, preset: str | None) -> Any:
    """The world of the last `lakehouse generate` (so ids match the ERP's), or the preset's."""
    from generator.world import Scale

    manifest = settings.generated_dir / "manifest.json"
    if preset is None and manifest.exists():
        return Scale.from_dict(json.loads(manifest.read_text())["scale"])
    return scale(preset or "demo")


def produce(
    settings: Settings,
    *,
    topic: str | None,
    preset: str | None,
    start: dt.datetime | None,
    days: int | None,
    key: str,
    faults: dict[str, float],
    events: int | None,
    ack_log: Path | None,
    as_json: bool,
    live: bool = False,
    **limits: Any,
) -> None:
    from generator.events import live_messages, simulated_messages
    from lakehouse.devstack.services import live_producer_file
    from streaming.producer import LIVE_LINGER_MS, Faults, produce

    if key not in ("session", "customer"):
        raise typer.BadParameter(f"--key must be session or customer, got {key!r}")
    world = generated_scale(settings, preset)
    first_day = day_index(world, start, "--start") or 0
    try:
        injected = Faults(**faults)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    window = world.days if days is None else min(days, world.days - first_day)
    if live:
        if start is not None or days is not None:
            raise typer.BadParameter("--live replays the whole world: drop --start and --days")
        stream = live_messages(world, key_by=key)
        limits["rate"] = limits.get("rate") or settings.live_events_per_second
        limits["linger_ms"] = LIVE_LINGER_MS
        total = events
    else:
        stream = simulated_messages(world, first_day, days, key_by=key)
        total = events or int(world.events * window / world.days)
    progress = console.progress_bar(as_json)
    task = progress.add_task("producing", total=total)
    heartbeat = live_producer_file(settings) if live else None
    if heartbeat is not None:
        heartbeat.parent.mkdir(parents=True, exist_ok=True)

    def on_progress(report: Any) -> None:
        progress.update(task, completed=report.events)
        if heartbeat is not None:
            heartbeat.write_text(json.dumps(report.to_dict(), default=str))

    with console.kafka_errors(settings), progress:
        report = produce(
            settings.kafka_bootstrap_servers,
            topic or settings.events_topic,
            stream,
            faults=injected,
            max_events=events,
            ack_log=ack_log,
            on_progress=on_progress,
            **limits,
        )
    if as_json:
        print_json(report.to_dict())
        return
    out.print(
        f"sent {report.events:,} events ({report.messages:,} messages incl. faults) to "
        f"{report.topic} in {report.seconds:.1f}s = {report.events_per_second:,.0f} msgs/s; "
        f"acknowledged {report.acknowledged:,}",
        highlight=False,
    )
    out.print(f"simulated time {report.first_event_time} .. {report.last_event_time}")
    faults_sent = {k: v for k, v in report.kinds.items() if k != "valid"}
    if faults_sent:
        out.print(f"faults: {faults_sent}", highlight=False)


def simulate_traffic(
    settings: Settings,
    *,
    preset: str | None,
    rate: float,
    duration: float,
    sessions: int | None,
    workers: int,
    seed: int,
    as_json: bool,
) -> None:
    from generator.world import build_world
    from lakehouse.devstack.traffic import simulate_traffic

    world = build_world(generated_scale(settings, preset))
    total = sessions or int(rate * duration)
    progress = console.progress_bar(as_json, "sessions")
    task = progress.add_task(f"shopping through {settings.api_url}", total=total)
    with progress:
        report = simulate_traffic(
            settings.api_url,
            world,
            rate,
            duration,
            sessions=sessions,
            workers=workers,
            seed=seed,
            on_progress=lambda r: progress.update(task, completed=r.sessions + r.failed_sessions),
            read_timeout=settings.api_produce_timeout_seconds + 5,
        )
    summary = report.to_dict()
    if as_json:
        print_json(summary)
    else:
        console.print_traffic(summary)
    if report.sessions == 0 and report.failed_sessions:
        fail(f"every session failed: {report.errors}")
