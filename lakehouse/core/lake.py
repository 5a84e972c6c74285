"""Lake access shared by every writer and reader of Delta tables outside Spark (ingesters,
maintenance, the ML and warehouse runners): where a table lives, the storage options LAKE_URI
needs, opening and appending with delta-rs, and describing a table.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError


def storage_options(lake_uri: str, aws_endpoint_url: str | None = None) -> dict[str, str]:
    """delta-rs storage options for a lake root; empty for a local lake.

    Credentials come from the standard AWS_* variables, which delta-rs reads itself. An endpoint
    (MinIO) needs path-style requests, plain HTTP when it says so, and conditional puts so that
    concurrent writers cannot overwrite each other's commits without a lock service.
    """
    if not lake_uri.startswith(("s3://", "s3a://")):
        return {}
    options = {"conditional_put": "etag"}
    if aws_endpoint_url:
        options["AWS_ENDPOINT_URL"] = aws_endpoint_url
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
        if urlsplit(aws_endpoint_url).scheme == "http":
            options["AWS_ALLOW_HTTP"] = "true"
    return options


@dataclass(frozen=True)
class Lake:
    """The Delta Lake root (a local path or s3://bucket/prefix) and the options to reach it.

    Tables are named `layer.table` (`bronze.events`, `gold.dim_date`)."""

    uri: str
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def at(
        cls,
        uri: str,
        aws_endpoint_url: str | None = None,
        credentials: Mapping[str, str] | None = None,
    ) -> Lake:
        """The lake at `uri`; `credentials` (AWS_* keys) only where the environment's do not
        apply (the embedded object store's own)."""
        return cls(uri, {**storage_options(uri, aws_endpoint_url), **(credentials or {})})

    @property
    def storage_options(self) -> dict[str, str] | None:
        """The options as delta-rs takes them (None for a local lake)."""
        return dict(self.options) or None

    def table_uri(self, table: str) -> str:
        """Location of a table: table_uri("bronze.events") -> <lake>/bronze/events."""
        layer, _, name = table.partition(".")
        if not layer or not name:
            raise ValueError(f"expected a table name like layer.table, got {table!r}")
        return f"{self.uri.rstrip('/')}/{layer}/{name}"

    def path(self, *parts: str) -> str:
        """A location under the lake root that is not a table (e.g. model artefacts)."""
        return "/".join([self.uri.rstrip("/"), *parts])

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """A pyarrow filesystem and the lake root's path on it, for files beside the tables
        (the serving snapshots): the local disk, or S3 with the lake's endpoint and keys."""
        parts = urlsplit(self.uri)
        if parts.scheme not in ("s3", "s3a"):
            return pafs.LocalFileSystem(), self.uri.rstrip("/")
        options = dict(self.options)
        endpoint = options.get("AWS_ENDPOINT_URL")
        s3 = pafs.S3FileSystem(
            access_key=options.get("AWS_ACCESS_KEY_ID"),
            secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
            endpoint_override=urlsplit(endpoint).netloc if endpoint else None,
            scheme=urlsplit(endpoint).scheme if endpoint else "https",
            region=os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
            force_virtual_addressing=False,
        )
        return s3, f"{parts.netloc}{parts.path}".rstrip("/")

    def open(self, table: str) -> DeltaTable | None:
        """The Delta table, or None when nothing has been written there yet."""
        return open_table(self.table_uri(table), self.options)

    def version(self, table: str) -> int | None:
        opened = self.open(table)
        return None if opened is None else opened.version()

    def write(
        self, table: str, data: pa.Table, *, mode: str = "append", **options: Any
    ) -> DeltaTable:
        """Write Arrow data to a table with delta-rs (created on first write); the table."""
        write_deltalake(
            self.table_uri(table),
            data,
            mode=mode,
            storage_options=self.storage_options,
            **options,
        )
        return DeltaTable(self.table_uri(table), storage_options=self.storage_options)


def open_table(uri: str, options: Mapping[str, str] | None = None) -> DeltaTable | None:
    """The Delta table at `uri`, or None when nothing has been written there yet."""
    try:
        return DeltaTable(uri, storage_options=dict(options or {}) or None)
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


# How a full disk reads: OSError errno 28 from Python and delta-rs (Rust's "os error 28"), or
# the same text inside a Spark Connect server's error.
_DISK_FULL = ("no space left on device", "os error 28", "disk quota exceeded")


def is_disk_full(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, says the disk is full."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(marker in str(current).lower() for marker in _DISK_FULL):
            return True
        current = current.__cause__ or current.__context__
    return False
