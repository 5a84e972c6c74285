"""Resources of the experiments domain: where the experiments are declared."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from lakehouse.core.settings import Settings

if TYPE_CHECKING:
    from ml.experiments import ExperimentSpec


class ExperimentsResource(dg.ConfigurableResource):
    """The A/B experiments as code (EXPERIMENTS_DIR: one YAML per experiment) and how often a
    running one is evaluated (EXPERIMENT_CHECK_SECONDS)."""

    folder: str
    check_seconds: int = 300

    def specs(self) -> list[ExperimentSpec]:
        from ml.experiments import load_experiments

        folder = Path(self.folder)
        return load_experiments(folder) if folder.is_dir() else []

    def running(self, now: dt.datetime | None = None) -> ExperimentSpec | None:
        from ml.experiments import running

        return running(self.specs(), now or dt.datetime.now(dt.UTC))


def experiments_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "experiments": ExperimentsResource(
            folder=str(settings.experiments_dir),
            check_seconds=settings.experiment_check_seconds,
        )
    }
