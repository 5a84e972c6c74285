"""Small helpers for the transform tests: UTC timestamps in, plain Python rows out."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql.types import TimestampType

UTC = dt.UTC


def ts(text: str) -> dt.datetime:
    """'2025-03-01 23:50[:ss]' as an aware UTC datetime (a TIMESTAMP input or expected value)."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def ntz(text: str) -> dt.datetime:
    """'2025-03-01 08:00[:ss]' as a naive datetime: the ERP's TIMESTAMP_NTZ columns."""
    return dt.datetime.fromisoformat(text)


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def rows(frame: DataFrame) -> list[dict[str, Any]]:
    """Collected rows as dicts; TIMESTAMP values as aware UTC datetimes (the client returns them
    naive in the local zone), so comparisons do not depend on the machine's time zone."""
    stamps = {f.name for f in frame.schema.fields if isinstance(f.dataType, TimestampType)}
    out = []
    for row in frame.collect():
        record = row.asDict()
        for name in stamps:
            if record[name] is not None:
                record[name] = record[name].astimezone(UTC)
        out.append(record)
    return out


def by(frame: DataFrame, *key: str) -> dict[Any, dict[str, Any]]:
    """Collected rows keyed by one column (or a tuple of columns); the key must be unique."""
    out: dict[Any, dict[str, Any]] = {}
    for record in rows(frame):
        k = record[key[0]] if len(key) == 1 else tuple(record[c] for c in key)
        assert k not in out, f"duplicate key {k!r}"
        out[k] = record
    return out
