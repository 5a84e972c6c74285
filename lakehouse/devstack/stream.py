"""`lakehouse stream`: the stream processor in the foreground until Ctrl-C or SIGTERM (the demo
runs it as a managed service: `lakehouse services up --with stream`)."""

from __future__ import annotations

from rich.progress import Progress, TextColumn, TimeElapsedColumn

from lakehouse.console import err
from lakehouse.core.kafka import ensure_topic
from lakehouse.core.settings import Settings, mask_password
from streaming.online import OnlineStore, Ttls
from streaming.processor import StreamProcessor, StreamReport, run_stream_processor


def online_store(settings: Settings) -> OnlineStore:
    return OnlineStore(settings.online_store_url, Ttls.of(settings))


def run_stream(
    settings: Settings, start: str, max_seconds: float | None, quiet: bool = False
) -> dict:
    """Feed the online store from the clickstream until stopped; what was applied."""
    # like `lakehouse produce`, so the processor can start before anything was produced
    ensure_topic(settings.kafka_bootstrap_servers, settings.events_topic, partitions=6)
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

    try:
        with progress:
            report = run_stream_processor(processor, max_seconds, on_batch)
    finally:
        store.close()
    return report.to_dict()
