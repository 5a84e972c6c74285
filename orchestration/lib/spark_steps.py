"""The Dagster assets of the Spark steps, derived from their registry entries
(spark_jobs/steps.py): one multi-asset per step, with its tables' descriptions, dependencies,
daily partitions, blocking Great Expectations checks, concurrency pool and code version. A
failing batch is left in staging, its check fails and nothing downstream runs."""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from expectations.gate import RESULTS_TABLE, ValidationReport
from orchestration.defs.resources import LakeResource, SparkConnectResource, TransformResource
from orchestration.lib.code_versions import source_version
from orchestration.lib.metadata import delta_metadata, markdown_table
from orchestration.lib.retries import TRANSIENT_RETRY, failing_fast_when_the_disk_is_full
from spark_jobs.pipeline import Step

GE_CHECK = "great_expectations"
# Shared by every step: the runner, change detection and the GX suites.
RUNNER = ("spark_jobs.pipeline", "spark_jobs.incremental", "expectations")


class TransformConfig(dg.Config):
    """What a step rebuilds: see `partition_dates`."""

    full_rebuild: bool = Field(
        default=False,
        description="Rebuild from the sources' whole history, whatever partitions were picked.",
    )


def daily_partitions(start: dt.date) -> dg.DailyPartitionsDefinition:
    """One partition per day (UTC) from `start` (PARTITIONS_START_DATE), today included, so
    streaming data has its partition."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), end_offset=1, timezone="UTC")


# Runs launched by the schedule, the sensors and the demo carry this tag: their steps rebuild the
# days that changed upstream, whatever partition the run is filed under (today's). Without it a
# partition range is a backfill of exactly those days.
REFRESH_TAG = "lakehouse/refresh"
CHANGED = "changed"


def refresh_request(now: dt.datetime | None = None) -> dict[str, Any]:
    """The partition and tags of an incremental refresh run (RunRequest / execute_in_process
    keyword arguments): filed under today's partition, rebuilding what changed."""
    today = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()
    return {"partition_key": today.isoformat(), "tags": {REFRESH_TAG: CHANGED}}


def partition_dates(context: dg.AssetExecutionContext) -> set[dt.date] | None:
    """The days a partitioned run backfills; None (rebuild what changed) for a refresh run.

    Dagster cannot run partitioned assets with partitioned parents without a partition, so
    incremental refreshes are filed under today's partition and tagged (`refresh_request`)."""
    if context.run.tags.get(REFRESH_TAG) == CHANGED or not context.has_partition_key_range:
        return None
    window = context.partition_time_window
    first, end = window.start.date(), window.end.date()
    return {first + dt.timedelta(days=k) for k in range((end - first).days)}


def key(table: str) -> dg.AssetKey:
    return dg.AssetKey(table.split("."))


def check_result(
    table: str, report: ValidationReport | None, note: str = "", result: dict | None = None
) -> dg.AssetCheckResult:
    if report is None:
        return dg.AssetCheckResult(
            asset_key=key(table), check_name=GE_CHECK, passed=True, metadata={"note": note}
        )
    outcomes = [
        {
            "expectation": o.expectation,
            "column": o.column or "",
            "severity": o.severity,
            "passed": o.success,
            "observed": o.observed_value or "",
            "unexpected": "" if o.unexpected_count is None else o.unexpected_count,
        }
        for o in report.outcomes
    ]
    # integrity failures block (ERROR); distribution ones only warn: the batch is published
    return dg.AssetCheckResult(
        asset_key=key(table),
        check_name=GE_CHECK,
        passed=report.success and not report.warnings,
        severity=dg.AssetCheckSeverity.ERROR if report.failures else dg.AssetCheckSeverity.WARN,
        description=report.summary(),
        metadata={
            "batch": report.batch,
            "expectations": len(report.outcomes),
            "failed": [o.label for o in report.failures],
            "warnings": [o.label for o in report.warnings],
            "results": dg.MetadataValue.md(markdown_table(outcomes)),
            "validation_id": report.validation_id,
            "staging": f"{report.staging_uri} @ v{report.staging_version}",
            "stored_in": RESULTS_TABLE,
            **({"step_result": dg.MetadataValue.json(result)} if result else {}),
        },
    )


def step_asset(step: Step, daily: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """A multi-asset running one step; its outputs are gated, its quarantine is not.

    Steps over date-partitioned tables get `daily` partitions: a backfill of a date range runs
    as one run (single-run backfill policy), and a refresh run (`refresh_request`) reports the
    days it rebuilt as partition materialisations. Each step has a concurrency pool of its own,
    so overlapping runs (the nightly one, streaming refreshes, a backfill) take turns at a
    table instead of staging and publishing over each other."""
    partitioned = step.partitioned
    version = source_version(*RUNNER, files=step.code_files)
    specs = [
        dg.AssetSpec(
            key=key(t.name),
            description=t.description,
            deps=[key(d) for d in step.inputs + step.references],
            kinds=set(step.kinds),
            group_name=step.group,
            owners=["team:data-engineering"],
            skippable=True,
            code_version=version,
        )
        for t in step.tables
    ]
    checks = [
        dg.AssetCheckSpec(
            GE_CHECK,
            asset=key(t.name),
            blocking=True,
            description=f"Great Expectations suite of {t.name} on the staged batch; the batch is "
            "published only if it passes.",
        )
        for t in step.outputs
    ]
    gated = [t.name for t in step.outputs]
    quarantine = step.quarantine.name if step.quarantine else None

    @dg.multi_asset(
        specs=specs,
        check_specs=checks,
        name=step.name.replace(".", "__"),
        can_subset=False,
        retry_policy=TRANSIENT_RETRY,
        partitions_def=daily if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        pool=f"lake:{step.name}",
    )
    def _step(
        context: dg.AssetExecutionContext,
        config: TransformConfig,
        spark: SparkConnectResource,
        lake: LakeResource,
        transform: TransformResource,
    ):
        from spark_jobs.pipeline import GateFailed, MissingInput

        # full_rebuild covers the whole history, whichever partition the run was filed under
        dates = partition_dates(context) if partitioned and not config.full_rebuild else None
        with spark.session() as session:
            pipeline = transform.pipeline(
                session,
                lake.lake,
                on_batch=lambda table, i, n, part: context.log.info(
                    f"{table}: batch {i}/{n}, {min(part)}..{max(part)}"
                ),
            )
            try:
                with failing_fast_when_the_disk_is_full(step.name, lake.lake.uri):
                    results = pipeline.run(step, dates=dates, full=config.full_rebuild)
            except GateFailed as failed:
                results = [failed.result]
            except MissingInput as exc:
                raise dg.Failure(str(exc), allow_retries=False) from exc
        by_table = {r.table: r for r in results}
        for table in gated:
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
                yield check_result(table, result.report, result=result.to_dict())
                continue
            if partitioned and dates is None:
                yield from _partitions_rebuilt(context, daily, table, result.dates)
            yield dg.MaterializeResult(
                asset_key=key(table),
                metadata={**_facts(result), **delta_metadata(lake.open(table), result.uri)},
                check_results=[check_result(table, result.report, "nothing new upstream")],
            )
        if quarantine and all(by_table.get(t) and by_table[t].published for t in gated):
            quarantined = sum(r.quarantined for r in results)
            if partitioned and dates is None:
                rebuilt = sorted({d for r in results for d in (r.dates or [])})
                yield from _partitions_rebuilt(context, daily, quarantine, rebuilt)
            yield dg.MaterializeResult(
                asset_key=key(quarantine),
                metadata={
                    "rows_quarantined_in_batch": quarantined,
                    **delta_metadata(lake.open(quarantine), lake.table_uri(quarantine)),
                },
            )

    return _step


def _partitions_rebuilt(
    context: dg.AssetExecutionContext,
    daily: dg.PartitionsDefinition,
    table: str,
    days: list[str] | None,
) -> Iterator[dg.AssetMaterialization]:
    """Record the days an incremental run rebuilt as materialisations of those partitions, so
    the UI's partition status shows what is built; days outside the partitions are counted."""
    if not days:
        return
    outside = [d for d in days if not daily.has_partition_key(d)]
    if outside:
        context.log.warning(
            f"{table}: {len(outside)} rebuilt days ({outside[0]}..{outside[-1]}) are outside "
            "the daily partitions (PARTITIONS_START_DATE)"
        )
    for day in days:
        if day not in outside:
            yield dg.AssetMaterialization(
                asset_key=key(table),
                partition=day,
                metadata={"refresh": "incremental", "days_in_run": len(days)},
            )


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
        "step_result": dg.MetadataValue.json(result.to_dict()),  # what `lakehouse transform` prints
        **({"note": result.note} if result.note else {}),
    }
