"""`lakehouse stream`: the stream processor in the foreground until Ctrl-C or SIGTERM (the demo
runs it as a managed service: `lakehouse services up --with stream`), and beside it the stream
file the Real-time dashboard reads (warehouse/stream_kpis.py), published every
STREAM_KPI_SECONDS with the recommendation API's health (serving/health.py) scraped just
before."""

from __future__ import annotations

import threading
import time

from rich.progress import Progress, TextColumn, TimeElapsedColumn

from lakehouse.console import err
from lakehouse.core.kafka import EVENTS_TOPIC_PARTITIONS, ensure_topic
from lakehouse.core.settings import Settings, mask_password
from serving.health import Counters, down, health, scrape
from streaming.online import OnlineStore, Ttls
from streaming.processor import StreamProcessor, StreamReport, run_stream_processor
from warehouse.stream_kpis import publish_stream_kpis

COMPLAIN_EVERY = 30.0  # seconds between two messages about the same failing publish


def online_store(settings: Settings) -> OnlineStore:
    return OnlineStore(settings.online_store_url, Ttls.of(settings))


def run_stream(
    settings: Settings, start: str, max_seconds: float | None, quiet: bool = False
) -> dict:
    """Feed the online store from the clickstream until stopped; what was applied."""
    # like `lakehouse produce`, so the processor can start before anything was produced
    ensure_topic(settings.kafka_bootstrap_servers, settings.events_topic, EVENTS_TOPIC_PARTITIONS)
    store = online_store(settings)
    processor = StreamProcessor(
        settings.kafka_bootstrap_servers, settings.events_topic, settings.stream_group, store, start
    )
    progress = Progress(
        TextColumn(f"streaming {settings.events_topic} into {mask_password(store.url)}"),
        TextColumn("{task.fields[applied]:,} applied, {task.fields[duplicates]:,} duplicates"),
        TextColumn("{task.fields[bad]:,} bad"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
    )
    task = progress.add_task("stream", total=None, applied=0, duplicates=0, bad=0)

    def on_batch(r: StreamReport) -> None:
        progress.update(task, applied=r.applied, duplicates=r.duplicates, bad=r.bad)

    stop = threading.Event()
    publisher = threading.Thread(
        target=publish_kpis_until, args=(settings, store, stop), name="stream-kpis", daemon=True
    )
    publisher.start()
    try:
        with progress:
            report = run_stream_processor(processor, max_seconds, on_batch)
    finally:
        stop.set()
        publisher.join(timeout=10)
        store.close()
    return report.to_dict()


def record_api_health(
    settings: Settings, store: OnlineStore, previous: Counters | None
) -> Counters | None:
    """Scrape the recommendation API's metrics and keep its health row for the interval since
    `previous` (or a row saying it is down); the counters, for the next interval."""
    try:
        current = scrape(settings.api_url)
    except OSError:
        store.record_api_health(down(time.time()))
        return None
    store.record_api_health(health(previous, current))
    return current


def publish_kpis_until(settings: Settings, store: OnlineStore, stop: threading.Event) -> None:
    """Publish the stream file every STREAM_KPI_SECONDS until `stop`; a failure (Redis away, a
    full disk) is reported and retried, and never stops the processor."""
    complained = 0.0
    previous = None  # the API's counters at the last scrape
    while True:
        # a fixed cadence, however long a publish takes
        due = time.monotonic() + settings.stream_kpi_seconds
        try:
            previous = record_api_health(settings, store, previous)
        except Exception as exc:  # noqa: BLE001 - the API's health never holds up the file
            previous = None
            if time.monotonic() - complained >= COMPLAIN_EVERY:
                err.print(f"API health not recorded (retrying): {exc}", highlight=False)
                complained = time.monotonic()
        try:
            publish_stream_kpis(store, settings.warehouse_path)
        except Exception as exc:  # noqa: BLE001 - whatever failed (Redis, disk, DuckDB), retry
            if time.monotonic() - complained >= COMPLAIN_EVERY:
                err.print(f"stream file not published (retrying): {exc}", highlight=False)
                complained = time.monotonic()
        if stop.wait(max(0.0, due - time.monotonic())):
            return
