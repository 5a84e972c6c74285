"""One Dagster asset per pipeline step (spark_jobs/steps.py), with its GX gate as a blocking
asset check: a failing batch is left in staging, the check fails and nothing downstream runs."""

import datetime as dt
from typing import Any

import dagster as dg
from pydantic import Field

from expectations.gate import RESULTS_LAYER, RESULTS_TABLE, ValidationReport
from orchestration.defs.resources import LakeResource, SparkConnectResource, platform_settings
from orchestration.lib.metadata import delta_metadata, markdown_table
from orchestration.lib.retries import TRANSIENT_RETRY

GE_CHECK = "great_expectations"


class TransformConfig(dg.Config):
    """By default a step rebuilds only what changed upstream; a date range backfills."""

    start_date: str | None = Field(
        default=None, description="First date (YYYY-MM-DD) to rebuild; needs end_date."
    )
    end_date: str | None = Field(default=None, description="Last date (YYYY-MM-DD) to rebuild.")
    full_rebuild: bool = Field(
        default=False, description="Rebuild from the sources' whole history."
    )

    def dates(self) -> set[dt.date] | None:
        if self.start_date is None and self.end_date is None:
            return None
        if self.start_date is None or self.end_date is None:
            raise dg.Failure(
                "start_date and end_date go together (a date range to backfill)",
                allow_retries=False,
            )
        try:
            first, last = (
                dt.date.fromisoformat(self.start_date),
                dt.date.fromisoformat(self.end_date),
            )
        except ValueError as exc:
            raise dg.Failure(f"dates must be YYYY-MM-DD: {exc}", allow_retries=False) from exc
        if last < first:
            raise dg.Failure(f"end_date {last} is before start_date {first}", allow_retries=False)
        return {first + dt.timedelta(days=k) for k in range((last - first).days + 1)}


def key(table: str) -> dg.AssetKey:
    return dg.AssetKey(table.split("."))


def check_result(
    table: str, report: ValidationReport | None, note: str = ""
) -> dg.AssetCheckResult:
    if report is None:
        return dg.AssetCheckResult(
            asset_key=key(table), check_name=GE_CHECK, passed=True, metadata={"note": note}
        )
    outcomes = [
        {
            "expectation": o.expectation,
            "column": o.column or "",
            "passed": o.success,
            "observed": o.observed_value or "",
            "unexpected": "" if o.unexpected_count is None else o.unexpected_count,
        }
        for o in report.outcomes
    ]
    return dg.AssetCheckResult(
        asset_key=key(table),
        check_name=GE_CHECK,
        passed=report.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=report.summary(),
        metadata={
            "batch": report.batch,
            "expectations": len(report.outcomes),
            "failed": [o.label for o in report.failures],
            "results": dg.MetadataValue.md(markdown_table(outcomes)),
            "validation_id": report.validation_id,
            "staging": f"{report.staging_uri} @ v{report.staging_version}",
            "stored_in": f"{RESULTS_LAYER}.{RESULTS_TABLE}",
        },
    )


def step_asset(
    step: str,
    *,
    tables: list[str],
    deps: list[str],
    descriptions: dict[str, str],
    group: str,
    quarantine: str | None = None,
) -> dg.AssetsDefinition:
    """A multi-asset running one pipeline step; `tables` are gated, `quarantine` is not."""
    specs = [
        dg.AssetSpec(
            key=key(t),
            description=descriptions[t],
            deps=[key(d) for d in deps],
            kinds={"spark", "delta"},
            group_name=group,
            owners=["team:data-engineering"],
            skippable=True,
        )
        for t in tables + ([quarantine] if quarantine else [])
    ]
    checks = [
        dg.AssetCheckSpec(
            GE_CHECK,
            asset=key(t),
            blocking=True,
            description=f"Great Expectations suite of {t} on the staged batch; the batch is "
            "published only if it passes.",
        )
        for t in tables
    ]

    @dg.multi_asset(
        specs=specs,
        check_specs=checks,
        name=step.replace(".", "__"),
        can_subset=False,
        retry_policy=TRANSIENT_RETRY,
    )
    def _step(
        context: dg.AssetExecutionContext,
        config: TransformConfig,
        spark: SparkConnectResource,
        lake: LakeResource,
    ):
        from spark_jobs.pipeline import GateFailed, MissingInput, Pipeline
        from spark_jobs.steps import run_step

        settings = platform_settings(lake=lake, spark=spark)
        dates = config.dates()
        with spark.session() as session:
            pipeline = Pipeline(
                session,
                settings,
                on_batch=lambda table, i, n, part: context.log.info(
                    f"{table}: batch {i}/{n}, {min(part)}..{max(part)}"
                ),
            )
            try:
                results = run_step(pipeline, step, dates=dates, full=config.full_rebuild)
            except GateFailed as failed:
                results = [failed.result]
            except MissingInput as exc:
                raise dg.Failure(str(exc), allow_retries=False) from exc
        by_table = {r.table: r for r in results}
        for table in tables:
            result = by_table.get(table)
            if result is None:  # an earlier table of this step failed its gate
                yield dg.AssetCheckResult(
                    asset_key=key(table),
                    check_name=GE_CHECK,
                    passed=False,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description="not evaluated: the batch it depends on failed its gate",
                )
                continue
            if not result.published and not result.skipped:
                context.log.error(
                    f"{table}: batch left in staging, not published: {result.report.summary()}"
                )
                yield check_result(table, result.report)
                continue
            yield dg.MaterializeResult(
                asset_key=key(table),
                metadata={
                    **_facts(result),
                    **delta_metadata(lake.open(*table.split(".")), result.uri),
                },
                check_results=[check_result(table, result.report, "nothing new upstream")],
            )
        if quarantine and all(by_table.get(t) and by_table[t].published for t in tables):
            quarantined = sum(r.quarantined for r in results)
            yield dg.MaterializeResult(
                asset_key=key(quarantine),
                metadata={
                    "rows_quarantined_in_batch": quarantined,
                    **delta_metadata(
                        lake.open(*quarantine.split(".")), lake.table_uri(*quarantine.split("."))
                    ),
                },
            )

    return _step


def _facts(result: Any) -> dict[str, Any]:
    return {
        "skipped": result.skipped,
        "partitions_rebuilt": "whole table" if result.dates is None else len(result.dates),
        "first_partition": result.dates[0] if result.dates else "",
        "last_partition": result.dates[-1] if result.dates else "",
        "batch_rows": result.rows,
        "computed_in_batches": result.batches,
        "rows_quarantined": result.quarantined,
        "seconds": round(result.seconds, 2),
        "source_versions": {k: int(v) for k, v in result.sources.items()},
    }
