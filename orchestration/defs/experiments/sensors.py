"""While an A/B experiment runs, evaluate it whenever new exposures reached gold, then publish
the serving snapshot, so a decision (a promotion, or a stop for a broken split) reaches the API
without anyone waiting for the nightly run."""

import dagster as dg

from orchestration.defs.experiments.assets import experiment_results
from orchestration.defs.experiments.resources import ExperimentsResource
from orchestration.defs.resources import LakeResource

evaluate_experiments_job = dg.define_asset_job(
    "evaluate_experiments",
    selection=dg.AssetSelection.assets(experiment_results)
    | dg.AssetSelection.assets(dg.AssetKey(["serving", "snapshot"])),
    description="The experiments' results and decisions, then the serving snapshot that hands "
    "a decision to the API.",
)


@dg.sensor(
    job=evaluate_experiments_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="While an experiment runs (experiments/*.yaml), runs evaluate_experiments at "
    "most every EXPERIMENT_CHECK_SECONDS when gold.recommendation_exposures has a new version.",
)
def experiment_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, experiments: ExperimentsResource
) -> dg.SensorResult | dg.SkipReason:
    import time

    spec = experiments.running()
    if spec is None:
        return dg.SkipReason("no experiment is running")
    version = lake.lake.version("gold.recommendation_exposures")
    if version is None:
        return dg.SkipReason(f"{spec.name} runs, but nothing was shown yet (no exposures table)")
    last_version, last_time = (context.cursor or "-1:0").split(":")
    if int(last_version) == version:
        return dg.SkipReason(f"{spec.name}: no new exposures since version {version}")
    waited = time.time() - float(last_time)
    if waited < experiments.check_seconds:
        return dg.SkipReason(
            f"{spec.name}: evaluated {waited:.0f} s ago (every {experiments.check_seconds} s)"
        )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"{spec.name}:{version}",
                tags={"lakehouse/experiment": spec.name, "lakehouse/exposures": str(version)},
            )
        ],
        cursor=f"{version}:{time.time():.0f}",
    )
