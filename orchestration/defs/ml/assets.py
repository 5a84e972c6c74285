"""The `ml` group: recommenders and customer models trained on gold, outputs written to gold.

The group is a chain. Its steps (spark_jobs/steps.py, group `ml`, gated by Great
Expectations like the rest of gold) build the recommenders' training data
(gold.customer_product_daily, the ranker's features and, in Python, its training candidates)
and the product tables (similar products, associations, trending). Then the recommenders, in
Python only, one asset per runner of spark_jobs/recommender_training.py, each materialisable on
its own once the one before it is:
`recommender_evaluation` (every model on a validation and a test window, the champion:
gold.model_evaluations, gold.recommendation_backtests) → `recommender_models` (every model
refitted on every day and versioned: gold.model_registry) → `customer_recommendations` (the
champion's lists). `customer_models` and the session models append to the log tables too and
record that as materialisations of them.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import dagster as dg

from ml import CUSTOMER_MODEL_INPUTS, RANKER_CANDIDATES, RANKER_FEATURES, RECOMMENDER_INPUTS
from ml.evaluation import by_model
from orchestration.defs.ml.resources import TrainingResource
from orchestration.defs.resources import LakeResource, SparkConnectResource
from orchestration.lib.code_versions import source_version
from orchestration.lib.metadata import delta_metadata, markdown_table
from orchestration.lib.retries import TRANSIENT_RETRY
from orchestration.lib.spark_steps import key, step_asset
from spark_jobs.steps import STEPS

if TYPE_CHECKING:
    from spark_jobs.training import Report

# the recommenders' tables, in the order of their chain
RECOMMENDER_OUTPUTS = {
    "gold.model_evaluations": (
        "Offline evaluation of every model per training run (long format: one row per metric): "
        "every recommender and baseline fitted before the validation window (the champion is "
        "chosen there) and before the test window, both tasks (`all`, `new`); the refit's "
        "held-out-future rows join the run. With parameters, training-input Delta versions and "
        "the champion flag.",
        {"lightgbm", "implicit", "sklearn", "delta"},
    ),
    "gold.recommendation_backtests": (
        "The champion's lists as the validation and test fits would have published them (as "
        "of each window's start), for the customers active in it: the honest batch lists "
        "the live blend's session share is tuned on (ml/session_recommender).",
        {"delta"},
    ),
    "gold.model_registry": (
        "Every stored model version (artefacts under <LAKE_URI>/models) with its metrics: every "
        "recommender refitted up to the newest day, the newest evaluation's champion also as "
        "`recommender`.",
        {"lightgbm", "implicit", "sklearn", "delta"},
    ),
    "gold.customer_recommendations": (
        "Top-N products per customer from the registry's `recommender` (the champion refitted "
        "up to the newest day): its list, then the popular products of the last 28 days, with "
        "score, rank and a reason.",
        {"delta"},
    ),
}
# the three trainers rewrite gold.model_registry (and append to gold.model_evaluations): one at a
# time, so no Delta commit of one overwrites another's
MODEL_LOG_POOL = "lake:gold.model_registry"
RECOMMENDER_RUNNER = "spark_jobs.recommender_training"
# what `lakehouse ml train --part recommenders` builds before the recommenders: the Spark steps
# of the group (training data and product tables)
RECOMMENDER_STEP_TABLES = tuple(t.name for s in STEPS if s.group == "ml" for t in s.tables)

CUSTOMER_OUTPUTS = {
    "gold.customer_features": (
        "Per customer and cutoff date: RFM and behavioural features, and the labels of the "
        "churn/propensity windows after the cutoff (the customer models' training data).",
        {"spark", "delta"},
    ),
    "gold.customer_scores": (
        "Per customer, as of the newest day: segment, churn probability and risk flag, purchase "
        "propensity, predicted CLV over the churn window and its naive baseline.",
        {"sklearn", "delta"},
    ),
    "gold.customer_segment_profiles": (
        "K-means segments (k by silhouette): size, share, feature means and a label.",
        {"sklearn", "delta"},
    ),
}


def _specs(
    outputs: dict[str, tuple[str, set[str]]], inputs: tuple[str, ...], runner: str
) -> list[dg.AssetSpec]:
    """The assets of one runner (`runner`: its module)."""
    version = source_version("ml", "spark_jobs.ml_inputs", "spark_jobs.training", runner)
    return [
        dg.AssetSpec(
            key=key(table),
            description=description,
            deps=[key(t) for t in inputs],
            kinds=kinds,
            group_name="ml",
            owners=["team:data-science"],
            code_version=version,
        )
        for table, (description, kinds) in outputs.items()
    ]


@contextmanager
def _not_retried_when_data_is_missing() -> Iterator[None]:
    """Missing or too little gold data is not transient: fail at once instead of retrying."""
    from spark_jobs.training import NotEnoughData

    try:
        yield
    except NotEnoughData as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc


def _materialised(lake: LakeResource, tables: dict[str, int], extra: dict[str, dict[str, Any]]):
    for table, rows in tables.items():
        yield (
            table,
            {
                "rows_written": rows,
                **delta_metadata(lake.open(table), lake.table_uri(table)),
                **extra.get(table, {}),
            },
        )


def _feedback_table(feedback: dict[str, dict[str, dict[str, float]]]) -> dg.MetadataValue:
    models = next(iter(feedback.values()))
    return dg.MetadataValue.md(
        markdown_table(
            [
                {"model": m, **{t: round(feedback[t][m]["ndcg@10"], 4) for t in feedback}}
                for m in models
            ]
        )
    )


def _outputs(*tables: str) -> dict[str, tuple[str, set[str]]]:
    return {table: RECOMMENDER_OUTPUTS[table] for table in tables}


def _run_metadata(report: "Report") -> dict[str, Any]:
    """Each recommender runner's seconds and its whole report (read by `ml train`)."""
    return {
        "seconds": {k: round(v, 1) for k, v in report.seconds.items()},
        "training_report": dg.MetadataValue.json(_plain(report.to_dict())),
    }


def _figures(rows: list[dict[str, Any]]) -> dg.MetadataValue:
    return dg.MetadataValue.md(
        markdown_table(
            [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
        )
    )


@dg.multi_asset(
    specs=_specs(
        _outputs("gold.model_evaluations", "gold.recommendation_backtests"),
        (RANKER_FEATURES, RANKER_CANDIDATES, *RECOMMENDER_INPUTS),
        RECOMMENDER_RUNNER,
    ),
    name="recommender_evaluation",
    can_subset=False,
    retry_policy=TRANSIENT_RETRY,
    pool=MODEL_LOG_POOL,
)
def recommender_evaluation(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    training: TrainingResource,
):
    """Every recommender and baseline fitted before a validation window (the champion is chosen
    on it) and before the test window after it (the figure reported). No Spark session is held
    through the fits: the Spark work is done by the group's steps before."""
    from spark_jobs.recommender_training import evaluate_recommenders

    with _not_retried_when_data_is_missing():
        report = evaluate_recommenders(lake.lake, training.options(), context.log.info)
    metric, target = training.champion_metric, training.champion_task
    table = by_model(report.evaluations, metric)
    chosen = next(row for row in table if row["model"] == report.champion)
    extra = {
        "gold.model_evaluations": {
            "run_id": report.run_id,
            "windows": report.windows,
            "champion": report.champion,
            f"champion_validation_{target}_{metric}": chosen[f"validation {target}"],
            f"champion_test_all_{metric}": chosen["test all"],
            f"champion_test_new_{metric}": chosen["test new"],
            f"evaluation ({metric})": _figures(table),
            **_run_metadata(report),
        },
    }
    for table_name, metadata in _materialised(lake, report.tables, extra):
        yield dg.MaterializeResult(asset_key=key(table_name), metadata=metadata)


@dg.multi_asset(
    specs=_specs(
        _outputs("gold.model_registry"),
        ("gold.model_evaluations", RANKER_FEATURES, RANKER_CANDIDATES, *RECOMMENDER_INPUTS),
        RECOMMENDER_RUNNER,
    ),
    name="recommender_models",
    retry_policy=TRANSIENT_RETRY,
    pool=MODEL_LOG_POOL,
)
def recommender_models(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    training: TrainingResource,
):
    """Every model refitted on every day and versioned; the newest evaluation's champion also
    as `recommender`. Its scores on the generator's held-out future (and on the answers shoppers
    acted on) join the evaluation run in gold.model_evaluations."""
    from spark_jobs.recommender_training import refit_recommenders

    with _not_retried_when_data_is_missing():
        report = refit_recommenders(lake.lake, training.options(), context.log.info)
    metric = training.champion_metric
    future = by_model(report.evaluations, metric)  # the held-out future's rows only
    mine = next((row for row in future if row["model"] == report.champion), {})
    extra = {
        "gold.model_registry": {
            "run_id": report.run_id,
            "champion": report.champion,
            "champion_version": report.champion_version,
            # the published lists against the generator's held-out future, when there is one
            **{
                f"champion_future_{task}_{metric}": mine[f"future {task}"]
                for task in ("all", "new")
                if f"future {task}" in mine
            },
            **({f"future ({metric})": _figures(future)} if future else {}),
            **(
                {"feedback (ndcg@10 of held-out answers)": _feedback_table(report.feedback)}
                if report.feedback
                else {}
            ),
            **_run_metadata(report),
        }
    }
    for table_name, metadata in _materialised(lake, report.tables, extra):
        if table_name == "gold.model_registry":
            yield dg.MaterializeResult(asset_key=key(table_name), metadata=metadata)
        else:  # the evaluation run's log table, owned by `recommender_evaluation`
            context.log_event(dg.AssetMaterialization(asset_key=key(table_name), metadata=metadata))


@dg.multi_asset(
    specs=_specs(
        _outputs("gold.customer_recommendations"),
        ("gold.model_registry", *RECOMMENDER_INPUTS),
        RECOMMENDER_RUNNER,
    ),
    name="customer_recommendations",
    retry_policy=TRANSIENT_RETRY,
)
def customer_recommendations(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    training: TrainingResource,
):
    """The refitted champion's lists for every current customer."""
    from spark_jobs.recommender_training import publish_recommendations

    with _not_retried_when_data_is_missing():
        report = publish_recommendations(lake.lake, training.options(), context.log.info)
    extra = {
        "gold.customer_recommendations": {
            "champion": report.champion,
            "champion_version": report.champion_version,
            **_run_metadata(report),
        }
    }
    for table_name, metadata in _materialised(lake, report.tables, extra):
        yield dg.MaterializeResult(asset_key=key(table_name), metadata=metadata)


@dg.multi_asset(
    specs=_specs(CUSTOMER_OUTPUTS, CUSTOMER_MODEL_INPUTS, "spark_jobs.customer_training"),
    name="customer_models",
    pool=MODEL_LOG_POOL,
    can_subset=False,
    retry_policy=TRANSIENT_RETRY,
)
def customer_models(
    context: dg.AssetExecutionContext,
    spark: SparkConnectResource,
    lake: LakeResource,
    training: TrainingResource,
):
    """Segmentation, churn, propensity and CLV on time-split customer snapshots."""
    from spark_jobs.customer_training import train_customer_models

    with spark.session() as session, _not_retried_when_data_is_missing():
        report = train_customer_models(session, lake.lake, training.options(), context.log.info)
    summary = {
        e["task"]: {
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in e.items()
            if k in ("roc_auc", "baseline_roc_auc", "pr_auc", "f1", "mae", "mae_baseline")
        }
        for e in report.evaluations
    }
    extra = {
        "gold.customer_scores": {
            "evaluation": summary,
            "windows": report.windows,
            "training_report": dg.MetadataValue.json(_plain(report.to_dict())),  # `ml train`
        }
    }
    for table, metadata in _materialised(lake, report.tables, extra):
        if table in CUSTOMER_OUTPUTS:
            yield dg.MaterializeResult(asset_key=key(table), metadata=metadata)
        else:  # the shared model log tables, owned by the recommenders' assets
            context.log_event(dg.AssetMaterialization(asset_key=key(table), metadata=metadata))


@dg.asset(
    key=["ml", "session_recommender"],
    group_name="ml",
    kinds={"scipy"},
    owners=["team:data-science"],
    deps=[key("gold.fact_events"), key("gold.recommendation_backtests")],
    code_version=source_version("ml.session", "ml.blend", "spark_jobs.session_training"),
    retry_policy=TRANSIENT_RETRY,
    pool=MODEL_LOG_POOL,
    description="Next-item models of live sessions (popularity, association rules, item-kNN, "
    "V-SKNN) on a time split of the newest sessions: the champion by HR@20 on the validation "
    "window, reported on the test window after it, refitted on every session and versioned as "
    "`session_recommender` in the registry (the API's session part). With it, the live blend's "
    "session share, chosen on the recommenders' validation window (their backtest lists, the "
    "model refitted before the window) and scored on their test window. Appends to "
    "gold.model_evaluations (tasks next_item and session_blend).",
)
def session_recommender(context: dg.AssetExecutionContext, lake: LakeResource):
    from spark_jobs.session_training import train_session_models

    # an ERP-only platform has no sessions: the API then uses product neighbours
    return _trained_on_sessions(
        context,
        lake,
        train_session_models,
        "no session recommender trained",
        lambda report: {
            "champion": report.champion,
            "champion_version": report.champion_version,
            "session_share": report.windows["session_share"],
        },
    )


@dg.asset(
    key=["ml", "purchase_intent"],
    group_name="ml",
    kinds={"lightgbm"},
    owners=["team:data-science"],
    deps=[key("gold.fact_events"), key("gold.dim_product")],
    code_version=source_version("ml.intent", "spark_jobs.intent_training"),
    retry_policy=TRANSIENT_RETRY,
    pool=MODEL_LOG_POOL,
    description="Will a session end in a purchase, from what it did so far (the features the "
    "online store holds): LightGBM on a time split of the newest sessions, stopped early and "
    "thresholded on the validation window, reported on the test window next to a cart "
    "baseline, explained with TreeSHAP; versioned as `purchase_intent` in the registry. "
    "Appends to gold.model_evaluations (task purchase_intent).",
)
def purchase_intent(context: dg.AssetExecutionContext, lake: LakeResource):
    from spark_jobs.intent_training import train_intent_model

    return _trained_on_sessions(
        context,
        lake,
        train_intent_model,
        "no purchase-intent model trained",
        lambda report: {
            "model_version": report.champion_version,
            "shap_mean_abs": report.windows["shap_mean_abs"],
        },
    )


def _trained_on_sessions(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    train: Callable[..., Any],
    skipped: str,
    headline: Callable[[Any], dict[str, Any]],
) -> dg.MaterializeResult:
    """Run a training runner on the sessions: too few of them is a warning and a skip (the
    API keeps its previous model), not a failure; the log tables it appended to are recorded."""
    from spark_jobs.training import NotEnoughData

    try:
        report = train(lake.lake, context.log.info)
    except NotEnoughData as exc:
        context.log.warning(f"{skipped}: {exc}")
        return dg.MaterializeResult(metadata={"skipped": str(exc)})
    table = [
        {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
        for row in report.evaluations
    ]
    for name, metadata in _materialised(lake, report.tables, {}):
        context.log_event(dg.AssetMaterialization(asset_key=key(name), metadata=metadata))
    return dg.MaterializeResult(
        metadata={
            **headline(report),
            "windows": _plain(report.windows),
            "evaluation": dg.MetadataValue.md(markdown_table(table)),
            "training_report": dg.MetadataValue.json(_plain(report.to_dict())),
        }
    )


def ml_assets(daily: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The group's Spark steps, then the training runners."""
    steps = [step_asset(step, daily) for step in STEPS if step.group == "ml"]
    return [
        *steps,
        recommender_evaluation,
        recommender_models,
        customer_recommendations,
        customer_models,
        session_recommender,
        purchase_intent,
    ]


# the table whose materialisation carries each recommender runner's report, and the runner
RECOMMENDER_REPORTS = {
    "gold.model_evaluations": "evaluate",
    "gold.model_registry": "refit",
    "gold.customer_recommendations": "publish",
}


def recommender_report(materialized: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The recommenders' chain as one report (`lakehouse ml train`, the demo's summary): the
    evaluation's windows and champion, every run's evaluation rows and tables, the refit's
    version and feedback, and each runner's seconds under its name."""
    merged: dict[str, Any] = {"evaluations": [], "tables": {}, "seconds": {}}
    for table, runner in RECOMMENDER_REPORTS.items():
        report = materialized.get(table, {}).get("training_report")
        if report is None:
            continue
        merged["evaluations"] += report["evaluations"]
        for name, rows in report["tables"].items():  # rows written (both append to the log)
            merged["tables"][name] = merged["tables"].get(name, 0) + rows
        merged["seconds"] |= {f"{runner} {k}": v for k, v in report["seconds"].items()}
        for name, value in report.items():
            if name not in ("evaluations", "tables", "seconds") and merged.get(name) in (None, {}):
                merged[name] = value
    return merged


def _plain(value: Any) -> Any:
    """JSON-safe: numpy numbers, dates and the like as plain values or strings."""
    import json

    return json.loads(json.dumps(value, default=str))
