"""Gold: the star schema, the recommenders' interactions and the "right now" KPI tables.
One asset per step of spark_jobs/steps.py (where each step is declared)."""

import dagster as dg

from orchestration.lib.spark_steps import step_asset
from spark_jobs.steps import STEPS


def gold_assets(daily: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [step_asset(step, daily) for step in STEPS if step.group == "gold"]
