"""Resources of the ml domain: the knobs of training."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from lakehouse.core.settings import Settings

if TYPE_CHECKING:
    from spark_jobs.training import TrainingOptions


class TrainingResource(dg.ConfigurableResource):
    """How the models are trained and evaluated (ML_*, INTERACTION_HALF_LIFE_DAYS).
    `ground_truth_dir` is where the generator keeps its held-out future purchases, read only to
    score the published lists."""

    test_days: int
    churn_window_days: int
    propensity_window_days: int
    champion_metric: str
    recommendations: int
    champion_task: str
    interaction_half_life_days: float
    ranker_training_customers: int
    ranker_generator_customers: int
    ground_truth_dir: str | None = None

    def options(self) -> TrainingOptions:
        from spark_jobs.training import TrainingOptions

        return TrainingOptions(
            test_days=self.test_days,
            churn_window_days=self.churn_window_days,
            propensity_window_days=self.propensity_window_days,
            champion_metric=self.champion_metric,
            recommendations=self.recommendations,
            champion_task=self.champion_task,
            interaction_half_life_days=self.interaction_half_life_days,
            ranker_training_customers=self.ranker_training_customers,
            ranker_generator_customers=self.ranker_generator_customers,
            ground_truth_dir=Path(self.ground_truth_dir) if self.ground_truth_dir else None,
        )


def ml_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "training": TrainingResource(
            test_days=settings.ml_test_days,
            churn_window_days=settings.ml_churn_window_days,
            propensity_window_days=settings.ml_propensity_window_days,
            champion_metric=settings.ml_champion_metric,
            recommendations=settings.ml_recommendations,
            champion_task=settings.ml_champion_task,
            interaction_half_life_days=settings.interaction_half_life_days,
            ranker_training_customers=settings.ml_ranker_training_customers,
            ranker_generator_customers=settings.ml_ranker_generator_customers,
            ground_truth_dir=str(settings.generated_dir / "ground_truth"),
        )
    }
