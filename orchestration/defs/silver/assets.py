"""Silver: typed, deduplicated, conformed, history-keeping tables built by Spark from bronze.
One asset per step of spark_jobs/steps.py (where each step is declared)."""

import dagster as dg

from orchestration.lib.spark_steps import step_asset
from spark_jobs.steps import STEPS


def silver_assets(daily: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [step_asset(step, daily) for step in STEPS if step.group == "silver"]
