"""`lakehouse ingest --follow`: a long-running ingester that keeps bronze.events current until
Ctrl-C or SIGTERM (the Dagster asset ingests what the topic holds and stops; this never stops).
It publishes its progress under the data root, where `lakehouse ingest --status` finds it."""

from __future__ import annotations

from rich.progress import Progress, TextColumn, TimeElapsedColumn

from lakehouse.console import err
from lakehouse.core.settings import Settings
from streaming.ingest import IngestOptions, IngestReport, ingest, status_path


def follow_topic(settings: Settings, options: IngestOptions, quiet: bool = False) -> dict:
    """Ingest until stopped; the report of what was ingested."""
    progress = Progress(
        TextColumn("ingesting {task.fields[topic]}"),
        TextColumn("{task.fields[events]:,} events, {task.fields[dead]:,} dead letters"),
        TextColumn("lag {task.fields[lag]:,}"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
    )
    task = progress.add_task("ingest", total=None, topic=options.topic, events=0, dead=0, lag=0)

    def on_batch(r: IngestReport) -> None:
        lag = sum(r.lag.values())
        progress.update(task, events=r.events_written, dead=r.dead_letters_written, lag=lag)

    with progress:
        report = ingest(
            settings.lake,
            settings.kafka_bootstrap_servers,
            options,
            follow=True,
            on_batch=on_batch,
            status_file=status_path(settings.run_dir, options.topic),
        )
    return report.to_dict()
