"""Streaming refresh: ingest the clickstream whenever the topic has messages bronze lacks, then
bring silver events, the real-time KPI tables and the live file up to date after each
ingestion."""

import dagster as dg
from confluent_kafka import KafkaException

from orchestration.defs.bronze.assets import bronze_clickstream
from orchestration.defs.resources import KafkaResource, LakeResource
from orchestration.lib.spark_steps import refresh_request
from spark_jobs.steps import STEPS
from streaming.ingest import TopicNotFound

SILVER_EVENTS = next(step for step in STEPS if step.name == "silver.events")

ingest_clickstream_job = dg.define_asset_job(
    "ingest_clickstream",
    selection=dg.AssetSelection.assets(bronze_clickstream),
    description="Bounded Kafka → bronze.events ingestion (what the topic holds now).",
)

streaming_refresh_job = dg.define_asset_job(
    "streaming_refresh",
    selection=dg.AssetSelection.assets(
        dg.AssetKey(["silver", "events"]),
        dg.AssetKey(["gold", "kpi_minute"]),
        dg.AssetKey(["gold", "kpi_hourly"]),
        dg.AssetKey(["bi", "live_warehouse"]),
    ).required_multi_asset_neighbors(),  # silver/events comes with its quarantine
    description="After an ingestion: the silver event partitions that changed, the minute and "
    "hour KPI tables, and the live file the real-time dashboard reads.",
)

_NOT_STARTED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
]
_ACTIVE = [*_NOT_STARTED, dg.DagsterRunStatus.STARTED]


@dg.sensor(
    job=ingest_clickstream_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests an ingestion run when the topic holds messages that bronze.events "
    "has not recorded (lag > 0), unless one is already queued or running; says why it skips "
    "when the broker lost or recreated the topic.",
)
def clickstream_sensor(
    context: dg.SensorEvaluationContext, kafka: KafkaResource, lake: LakeResource
) -> dg.RunRequest | dg.SkipReason:
    active = context.instance.get_run_records(
        dg.RunsFilter(job_name=ingest_clickstream_job.name, statuses=_ACTIVE), limit=1
    )
    if active:
        return dg.SkipReason(f"ingestion run {active[0].dagster_run.run_id} is still going")
    try:
        status = kafka.status(lake.lake)
    except KafkaException as exc:
        return dg.SkipReason(f"Kafka at {kafka.bootstrap_servers} not answering: {exc}")
    except TopicNotFound as exc:  # nothing produced yet: the first producer creates it
        return dg.SkipReason(f"nothing to ingest: {exc} yet")
    if status["problems"]:
        # not lag 0: the broker lost or recreated the topic; a run would only fail the same way
        return dg.SkipReason(
            f"{kafka.events_topic} cannot be ingested: "
            + "; ".join(status["problems"])
            + f". Recovery: `{status['recovery']}`"
        )
    lag = status["total_lag"]
    if lag == 0:
        return dg.SkipReason(f"bronze.events is up to date with {kafka.events_topic}")
    ends = ",".join(str(p["log_end"]) for p in status["partitions"])
    return dg.RunRequest(
        run_key=f"{kafka.events_topic}@{ends}",
        tags={"lakehouse/lag": str(lag)},
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[ingest_clickstream_job],
    request_job=streaming_refresh_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After every successful ingestion run, requests a streaming refresh, unless "
    "one has not started yet (it will see this ingestion's events). A refresh already running "
    "may have passed silver, so another one is requested; the pools make it wait its turn. "
    "Skips, naming what is missing, until the ERP transform has built silver's customers and "
    "products.",
)
def streaming_refresh_sensor(
    context: dg.RunStatusSensorContext, lake: LakeResource
) -> dg.RunRequest | dg.SkipReason:
    # silver.events keeps the events of known customers and products: before the first ERP
    # transform there are none, and a refresh would only fail
    missing = [t for t in SILVER_EVENTS.inputs if lake.lake.version(t) is None]
    if missing:
        return dg.SkipReason(
            f"{', '.join(missing)} not built yet: the events wait in bronze until the ERP is "
            "extracted and transformed (`lakehouse extract`, then `lakehouse transform`)"
        )
    waiting = context.instance.get_run_records(
        dg.RunsFilter(job_name=streaming_refresh_job.name, statuses=_NOT_STARTED), limit=1
    )
    if waiting:
        return dg.SkipReason(
            f"streaming refresh {waiting[0].dagster_run.run_id} has not started yet and will "
            "include these events"
        )
    return dg.RunRequest(run_key=f"after-{context.dagster_run.run_id}", **refresh_request())
