"""The `lakehouse` command line."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from lakehouse.services import ServiceError, ServiceManager, ServiceStatus
from lakehouse.settings import Settings, SettingsError, load_settings

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


@services_app.command("up")
def services_up(as_json: JsonOption = False) -> None:
    """Start the embedded services (idempotent) and wait until they are healthy."""
    manager = ServiceManager(_settings())
    say = (lambda _: None) if as_json else (lambda msg: err.print(f"[dim]{msg}…[/dim]"))
    statuses = _run(lambda: manager.up(progress=say))
    _print_statuses(statuses, as_json)
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)


@services_app.command("down")
def services_down(as_json: JsonOption = False) -> None:
    """Stop the embedded services started from this data root (by pid)."""
    statuses = _run(ServiceManager(_settings()).down)
    _print_statuses(statuses, as_json)


@services_app.command("status")
def services_status(as_json: JsonOption = False) -> None:
    """Show each service, its endpoint, pid, memory and health. Exit code 1 if any is down."""
    statuses = _run(ServiceManager(_settings()).status)
    _print_statuses(statuses, as_json)
    if not all(s.healthy for s in statuses):
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
def demo() -> None:
    """Run the platform end to end on embedded defaults and print where everything is."""
    from lakehouse import smoke

    settings = _settings()
    started = time.monotonic()
    steps = [
        ("Starting the embedded services", lambda: ServiceManager(settings).up(progress=_dim)),
        ("Sending a message through the broker", lambda: smoke.broker_round_trip(settings)),
        (
            "Writing and reading a Delta table via Spark Connect",
            lambda: smoke.delta_round_trip(settings),
        ),
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

    statuses, kafka, delta = results
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
    out.print("\n[bold]Where everything is[/bold]")
    for key, value in settings.describe().items():
        out.print(f"  {key:<24} {value}", highlight=False)
    out.print(
        f"\n[green]Demo finished in {time.monotonic() - started:.1f}s.[/green] "
        "Services keep running; stop them with `.venv/bin/lakehouse services down`."
    )


def _dim(message: str) -> None:
    out.print(f"      {message}…", style="dim", highlight=False)


def main() -> None:  # pragma: no cover - console entry point convenience
    app(prog_name="lakehouse")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
