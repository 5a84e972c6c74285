"""Run a Great Expectations 1.x suite over a Spark DataFrame and keep the results in the lake.

The gate is what the write-audit-publish runner (spark_jobs/pipeline.py) calls on a staged batch:
`validate` returns a ValidationReport; `store` appends it to `quality.validation_results`, a
Delta table Superset charts and the Dagster asset checks link to.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from expectations.suites import Suite
from lakehouse.core.lake import Lake

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

RESULTS_TABLE = "quality.validation_results"
RESULTS_SCHEMA = pa.schema(
    [
        ("validation_id", pa.string()),
        ("validated_at", pa.timestamp("us", tz="UTC")),
        ("validated_date", pa.date32()),
        ("table_name", pa.string()),
        ("suite", pa.string()),
        ("batch", pa.string()),
        ("staging_uri", pa.string()),
        ("staging_version", pa.int64()),
        ("suite_success", pa.bool_()),
        ("expectation", pa.string()),
        ("column_name", pa.string()),
        ("success", pa.bool_()),
        ("observed_value", pa.string()),
        ("element_count", pa.int64()),
        ("unexpected_count", pa.int64()),
        ("unexpected_percent", pa.float64()),
        ("kwargs", pa.string()),
        ("partial_unexpected", pa.string()),
        ("severity", pa.string()),
    ]
)


@dataclass
class Outcome:
    expectation: str
    column: str | None
    success: bool
    observed_value: str | None
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    kwargs: dict[str, Any]
    partial_unexpected: list[Any]
    severity: str = "critical"  # critical blocks the batch; warning only flags it

    @property
    def label(self) -> str:
        return f"{self.expectation}({self.column})" if self.column else self.expectation


@dataclass
class ValidationReport:
    table: str
    suite: str
    batch: str
    success: bool
    outcomes: list[Outcome]
    validated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    validation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    staging_uri: str | None = None
    staging_version: int | None = None

    @property
    def failures(self) -> list[Outcome]:
        """Failed integrity checks: any of them blocks the batch."""
        return [o for o in self.outcomes if not o.success and o.severity == "critical"]

    @property
    def warnings(self) -> list[Outcome]:
        """Failed distribution checks: the batch is published, flagged."""
        return [o for o in self.outcomes if not o.success and o.severity != "critical"]

    def summary(self) -> str:
        failed = ", ".join(o.label for o in self.failures)
        warned = ", ".join(o.label for o in self.warnings)
        ok = len(self.outcomes) - len(self.failures) - len(self.warnings)
        return (
            f"{ok}/{len(self.outcomes)} expectations passed"
            + (f"; failed: {failed}" if failed else "")
            + (f"; warnings: {warned}" if warned else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "suite": self.suite,
            "batch": self.batch,
            "success": self.success,
            "summary": self.summary(),
            "failures": [o.label for o in self.failures],
            "warnings": [o.label for o in self.warnings],
            "validation_id": self.validation_id,
            "staging_uri": self.staging_uri,
        }


@cache
def _batch_definition():
    """One ephemeral GX context per process (creating one costs seconds), quiet, Spark-backed."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # no per-run INFO chatter
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_spark("lakehouse")
    asset = source.add_dataframe_asset("batch")
    return context, asset.add_batch_definition_whole_dataframe("whole batch")


def validate(frame: DataFrame, suite: Suite, *, table: str, batch: str) -> ValidationReport:
    """Validate `frame` (after the suite's derived and reference columns are added)."""
    import great_expectations as gx

    context, definition = _batch_definition()
    name = f"{suite.name}-{uuid.uuid4().hex[:8]}"
    gx_suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=suite.expectations))
    try:
        result = definition.get_batch(
            batch_parameters={"dataframe": suite.prepare(frame)}
        ).validate(gx_suite)
    finally:
        context.suites.delete(name)
    outcomes = [_outcome(r) for r in result.results]
    blocked = any(not o.success and o.severity == "critical" for o in outcomes)
    return ValidationReport(
        table=table, suite=suite.name, batch=batch, success=not blocked, outcomes=outcomes
    )


def _outcome(r) -> Outcome:
    config = r.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    res = r.result or {}
    raised = (r.exception_info or {}).get("raised_exception")
    observed = res.get("observed_value")
    if raised:
        observed = f"error: {(r.exception_info or {}).get('exception_message')}"
    return Outcome(
        expectation=config.type,
        column=kwargs.get("column")
        or (",".join(kwargs["column_list"]) if "column_list" in kwargs else None),
        success=bool(r.success),
        observed_value=None if observed is None else str(observed),
        element_count=res.get("element_count"),
        unexpected_count=res.get("unexpected_count"),
        unexpected_percent=res.get("unexpected_percent"),
        kwargs=kwargs,
        partial_unexpected=list(res.get("partial_unexpected_list") or [])[:10],
        severity=str(getattr(config.severity, "value", config.severity) or "critical"),
    )


def store(lake: Lake, report: ValidationReport) -> str:
    """Append the report (one row per expectation) to quality.validation_results; its URI."""
    rows = [
        {
            "validation_id": report.validation_id,
            "validated_at": report.validated_at,
            "validated_date": report.validated_at.date(),
            "table_name": report.table,
            "suite": report.suite,
            "batch": report.batch,
            "staging_uri": report.staging_uri,
            "staging_version": report.staging_version,
            "suite_success": report.success,
            "expectation": o.expectation,
            "column_name": o.column,
            "success": o.success,
            "observed_value": o.observed_value,
            "element_count": o.element_count,
            "unexpected_count": o.unexpected_count,
            "unexpected_percent": o.unexpected_percent,
            "kwargs": json.dumps(o.kwargs, default=str, sort_keys=True),
            "partial_unexpected": json.dumps(o.partial_unexpected, default=str),
            "severity": o.severity,
        }
        for o in report.outcomes
    ]
    first = lake.open(RESULTS_TABLE) is None
    lake.write(
        RESULTS_TABLE,
        pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA),
        partition_by=["validated_date"] if first else None,
        schema_mode=None if first else "merge",  # tables from before `severity` gain it
    )
    return lake.table_uri(RESULTS_TABLE)
