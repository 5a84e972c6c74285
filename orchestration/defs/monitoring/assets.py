"""The `monitoring` group: the models' daily drift report (docs/ml.md, "Drift").

`gold/model_drift` measures each monitored model's inputs and scores on the newest data against
its training data (population stability index, spark_jobs/drift_report.py) and appends the
report. Its check fails, and with it the run (so `ops.run_failures` records which model and
feature drifted, and by how much), when a model's score PSI reaches DRIFT_PSI_THRESHOLD; an
input past it only warns.
"""

import dagster as dg

from orchestration.defs.monitoring.resources import MonitoringResource
from orchestration.defs.resources import LakeResource
from orchestration.lib.code_versions import source_version
from orchestration.lib.metadata import markdown_table
from orchestration.lib.spark_steps import key

DRIFT = key("gold.model_drift")
CHECK = "psi_below_threshold"


@dg.asset(
    key=DRIFT,
    group_name="monitoring",
    kinds={"delta"},
    owners=["team:data-science"],
    deps=[
        key("gold.fact_events"),
        key("gold.customer_features"),
        dg.AssetKey(["ml", "purchase_intent"]),
        key("gold.customer_scores"),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            CHECK,
            asset=DRIFT,
            blocking=True,
            description="Every model's score PSI below DRIFT_PSI_THRESHOLD (inputs past it warn).",
        )
    ],
    code_version=source_version("ml.drift", "spark_jobs.drift_report"),
    description="Daily drift report: per monitored model (purchase intent, churn, propensity) "
    "and per input and score, the population stability index of the newest data against the "
    "model's training data, with its status (stable < 0.1 ≤ moderate < 0.25 ≤ drift); one "
    "report appended per run.",
)
def model_drift(
    context: dg.AssetExecutionContext, lake: LakeResource, monitoring: MonitoringResource
):
    from spark_jobs.drift_report import drift_report

    report = drift_report(lake.lake, progress=context.log.info)
    limit = monitoring.psi_threshold
    scores = [r for r in report.worst(scores_only=True) if r["psi"] >= limit]
    inputs = [r for r in report.worst(scores_only=False) if r["psi"] >= limit]

    def named(rows: list[dict], most: int = 5) -> str:
        listed = "; ".join(
            f"{r['model']} {r['feature']} PSI {r['psi']:.3f} ({r['data_window']})"
            for r in rows[:most]
        )
        return listed + (f"; and {len(rows) - most} more" if len(rows) > most else "")

    table = [
        {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items() if k != "checked_at"}
        for r in report.rows
    ]
    yield dg.MaterializeResult(
        metadata={
            "rows": len(report.rows),
            "report": dg.MetadataValue.md(markdown_table(table) if table else "no rows"),
            "drift_report": dg.MetadataValue.json(table),  # `lakehouse ml drift`
            "skipped": report.skipped,
        }
    )
    description = (
        f"scores drifted (PSI ≥ {limit}): {named(scores)}"
        if scores
        else f"inputs drifted (PSI ≥ {limit}): {named(inputs)}"
        if inputs
        else f"every PSI below {limit}"
    )
    yield dg.AssetCheckResult(
        check_name=CHECK,
        passed=not scores and not inputs,
        severity=dg.AssetCheckSeverity.ERROR if scores else dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={"skipped": report.skipped},
    )
    if scores:  # the run fails, and the run-failure record says why
        raise dg.Failure(f"model drift: {description}", allow_retries=False)
