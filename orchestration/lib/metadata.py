"""Asset metadata from Delta tables: what a data engineer wants to see on every materialisation."""

from __future__ import annotations

from typing import Any

import dagster as dg

from lakehouse.core.lake import table_metadata


def delta_metadata(table: Any, uri: str, preview_rows: int = 5) -> dict[str, Any]:
    """Row count, Delta version, schema, location and a preview of a Delta table."""
    facts = table_metadata(table, preview_rows)
    return {
        "dagster/row_count": facts["row_count"],
        "dagster/uri": uri,
        "delta_version": facts["delta_version"],
        "files": facts["files"],
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, type_) for name, type_ in facts["schema"].items()]
        ),
        "preview": dg.MetadataValue.md(markdown_table(facts["preview"])),
    }


def markdown_table(rows: list[dict[str, Any]], max_width: int = 60) -> str:
    if not rows:
        return "_(empty)_"
    columns = list(dict.fromkeys(c for row in rows for c in row))  # rows may differ in keys

    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


# Tables written alongside assets (every GX gate appends its results; ERP extraction quarantines
# unreadable rows): read by the live file, not assets of their own.
BY_PRODUCTS = frozenset({"quality.validation_results", "bronze.erp_quarantine"})
