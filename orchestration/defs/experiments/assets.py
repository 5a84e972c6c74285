"""The `experiments` group: the A/B experiments' results and decisions (docs/experiments.md).

`experiments/results` reads `gold.recommendation_exposures` (what the API showed, and the clicks,
carts and purchases credited to it), computes every declared experiment's metrics and statistics
per day into `gold.experiment_results`, and records an experiment that concluded (a winner
promoted, or stopped by a sample ratio mismatch) in the model registry and
`gold.experiment_history`; the next serving snapshot hands the decision to the API.
"""

import dagster as dg

from orchestration.defs.experiments.resources import ExperimentsResource
from orchestration.defs.resources import LakeResource
from orchestration.lib.code_versions import source_version
from orchestration.lib.metadata import markdown_table
from orchestration.lib.spark_steps import key

RESULTS_DESCRIPTION = (
    "Per experiment, day and variant (every unit's outcomes counted with the day it was first "
    "exposed): units, exposures, CTR, add-to-cart rate, conversion and revenue per unit, and "
    "against the control the primary metric's difference with its interval, the fixed-horizon "
    "and always-valid p-values, the sample-ratio-mismatch p-value and the decision."
)
HISTORY_DESCRIPTION = (
    "Every concluded experiment: when, promoted or stopped, the winner and what it serves, the "
    "reason and the registry version (model `experiment_decision`)."
)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key("gold.experiment_results"),
            description=RESULTS_DESCRIPTION,
            deps=[key("gold.recommendation_exposures")],
            kinds={"duckdb", "delta"},
            group_name="experiments",
            owners=["team:data-science"],
        ),
        dg.AssetSpec(
            key("gold.experiment_history"),
            description=HISTORY_DESCRIPTION,
            deps=[key("gold.recommendation_exposures")],
            kinds={"delta"},
            group_name="experiments",
            owners=["team:data-science"],
        ),
    ],
    code_version=source_version("ml.experiments", "spark_jobs.experiment_results"),
)
def experiment_results(
    context: dg.AssetExecutionContext, lake: LakeResource, experiments: ExperimentsResource
):
    from pathlib import Path

    from spark_jobs.experiment_results import experiment_results as compute

    report = compute(lake.lake, Path(experiments.folder), context.log.info)
    for name, summary in report.experiments.items():
        if summary.get("decided") in report.decided:
            context.log.info(f"experiment {name} concluded: {summary['decided']['reason']}")
    latest = [
        {"experiment": name, "status": s["status"], "units": s["units"], "reason": s["reason"]}
        for name, s in report.experiments.items()
    ]
    yield dg.MaterializeResult(
        asset_key=key("gold.experiment_results"),
        metadata={
            "rows": report.rows,
            "experiments": dg.MetadataValue.md(markdown_table(latest) if latest else "none"),
            "source_delta_versions": report.inputs,
            "experiments_report": dg.MetadataValue.json(report.experiments),  # the CLI's
        },
    )
    yield dg.MaterializeResult(
        asset_key=key("gold.experiment_history"),
        metadata={"decided_now": dg.MetadataValue.json(report.decided)},
    )
