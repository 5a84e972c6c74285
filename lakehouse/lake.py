"""Delta Lake helpers shared by the Python writers (ingesters, maintenance): one place that knows
how to open a table, which storage options the lake needs, and how to describe a table.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from lakehouse.settings import Settings


def storage_options(settings: Settings) -> dict[str, str]:
    """delta-rs storage options for LAKE_URI; empty for a local lake.

    Credentials come from the standard AWS_* variables, which delta-rs reads itself. An endpoint
    (MinIO) needs path-style requests, plain HTTP when it says so, and conditional puts so that
    concurrent writers cannot overwrite each other's commits without a lock service.
    """
    if not settings.lake_uri.startswith(("s3://", "s3a://")):
        return {}
    options = {"conditional_put": "etag"}
    if settings.aws_endpoint_url:
        options["AWS_ENDPOINT_URL"] = settings.aws_endpoint_url
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
        if urlsplit(settings.aws_endpoint_url).scheme == "http":
            options["AWS_ALLOW_HTTP"] = "true"
    return options


def open_table(uri: str, options: dict[str, str] | None = None) -> DeltaTable | None:
    """The Delta table at `uri`, or None when nothing has been written there yet."""
    try:
        return DeltaTable(uri, storage_options=options or None)
    except TableNotFoundError:
        return None


def table_metadata(table: DeltaTable, preview_rows: int = 5) -> dict[str, Any]:
    """Facts about a table for asset metadata and CLI output: version, rows, files, schema."""
    return {
        "delta_version": table.version(),
        "row_count": table.count(),
        "files": len(table.file_uris()),
        "schema": {field.name: str(field.type) for field in pa.schema(table.schema())},
        "preview": preview(table, preview_rows),
    }


def preview(table: DeltaTable, rows: int) -> list[dict[str, Any]]:
    """The first rows of a table as JSON-friendly dicts (binary shown by its length).

    Read with delta-rs's own scan: pyarrow datasets over delta-rs can abort the interpreter at
    exit when their filesystem is released late."""
    if rows <= 0:
        return []
    batch = next(iter(table.scan()), None)
    if batch is None:
        return []
    out = []
    for row in pa.record_batch(batch).slice(0, rows).to_pylist():
        out.append(
            {
                k: (f"<{len(v)} bytes>" if isinstance(v, bytes) else v if _plain(v) else str(v))
                for k, v in row.items()
            }
        )
    return out


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


# Vacuum also deletes files no commit references; a writer's files are in that state between
# being written and being committed, so never vacuum anything younger than this.
MIN_RETENTION_HOURS = 1


def maintain(table: DeltaTable, retention_hours: int = 168) -> dict[str, int]:
    """Compact small files, checkpoint the log and vacuum unreferenced files (delta-rs).

    Safe next to a running ingester: compaction only rewrites committed files (appends don't
    conflict with it), and vacuum keeps anything younger than `retention_hours`."""
    if retention_hours < MIN_RETENTION_HOURS:
        raise ValueError(f"retention_hours must be >= {MIN_RETENTION_HOURS}, got {retention_hours}")
    compacted = table.optimize.compact()
    table.create_checkpoint()
    vacuumed = table.vacuum(
        retention_hours=retention_hours,
        dry_run=False,
        enforce_retention_duration=False,
        full=True,  # also files never committed (a writer killed mid-batch)
    )
    return {
        "files_removed": int(compacted.get("numFilesRemoved", 0)),
        "files_added": int(compacted.get("numFilesAdded", 0)),
        "files_vacuumed": len(vacuumed),
        "delta_version": table.version(),
    }
