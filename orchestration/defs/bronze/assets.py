"""Bronze: the clickstream from Kafka and the ERP tables, landed raw in Delta with lineage."""

import dagster as dg
from pydantic import Field

import streaming.contract
from ingestion.erp import ERP_TABLES, bronze_name
from orchestration.defs.resources import ErpDatabaseResource, KafkaResource, LakeResource
from orchestration.lib.code_versions import source_version
from orchestration.lib.metadata import delta_metadata
from orchestration.lib.retries import TRANSIENT_RETRY, failing_fast_when_the_disk_is_full
from orchestration.lib.spark_steps import key
from streaming.ingest import DEAD_LETTER_TABLE, EVENTS_TABLE, TopicNotFound, TopicReset

# Sources, shown in the graph so lineage starts where the data does.
CLICKSTREAM_TOPIC = dg.AssetSpec(
    key=["kafka", "clickstream_events"],
    description="Clickstream JSON events on the Kafka topic KAFKA_EVENTS_TOPIC "
    "(contract: docs/event_contract.md).",
    group_name="sources",
    kinds={"kafka"},
    owners=["team:data-engineering"],
)
ERP_SOURCES = {
    table: dg.AssetSpec(
        key=["erp", table],
        description=f"ERP table {table} in ERP_DB_URL (schema: docs/erp_schema.md).",
        group_name="sources",
        kinds={"sql"},
        owners=["team:data-engineering"],
    )
    for table in ERP_TABLES
}


INGEST_CODE = source_version(
    "streaming.ingest",
    "streaming.records",
    "streaming.contract",
    "lakehouse.core.lake",
    files=[streaming.contract.SCHEMA_PATH],
)
ERP_CODE = source_version("ingestion.erp", "lakehouse.core.lake")


class IngestConfig(dg.Config):
    """A bounded ingestion run: what is on the topic now, within these limits."""

    max_events: int | None = Field(default=None, description="Stop after this many messages.")
    max_seconds: float = Field(default=600.0, description="Stop after this many seconds.")
    batch_max_events: int = Field(default=50_000, description="Messages per Delta commit.")
    batch_max_seconds: float = Field(
        default=2.0, description="Longest a message waits for its commit."
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key=key(EVENTS_TABLE),
            description="Clickstream events exactly once, partitioned by event_date: the raw "
            "payload, the contract's fields as typed columns, and Kafka lineage (topic, "
            "partition, offset, timestamp, ingestion time, batch id). The consumed offsets are "
            "committed in the same Delta commits.",
            deps=[CLICKSTREAM_TOPIC],
            kinds={"kafka", "delta"},
            owners=["team:data-engineering"],
            code_version=INGEST_CODE,
        ),
        dg.AssetSpec(
            key=key(DEAD_LETTER_TABLE),
            description="Messages that are not valid events (undecodable bytes, invalid JSON, "
            "contract violations, unknown event types) with their raw bytes, the reason and "
            "Kafka lineage.",
            deps=[CLICKSTREAM_TOPIC],
            kinds={"kafka", "delta"},
            owners=["team:data-engineering"],
            code_version=INGEST_CODE,
        ),
    ],
    group_name="bronze",
    name="bronze_clickstream",
    retry_policy=TRANSIENT_RETRY,
)
def bronze_clickstream(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    kafka: KafkaResource,
    lake: LakeResource,
):
    """Ingest what the topic holds now into the bronze tables, then stop."""

    def log_batch(report) -> None:
        context.log.info(
            f"committed batch {report.batches}: {report.events_written:,} events, "
            f"{report.dead_letters_written:,} dead letters so far, lag {sum(report.lag.values()):,}"
        )

    try:
        with failing_fast_when_the_disk_is_full("bronze.events", lake.lake.uri):
            report = kafka.ingest(
                lake.lake,
                on_batch=log_batch,
                batch_max_events=config.batch_max_events,
                batch_max_seconds=config.batch_max_seconds,
                max_events=config.max_events,
                max_seconds=config.max_seconds,
            )
    except (TopicNotFound, TopicReset) as exc:  # not transient: no retries
        raise dg.Failure(str(exc), allow_retries=False) from exc
    run_facts = {
        "messages_consumed": report.messages,
        "events_per_second": report.events_per_second,
        "consumer_lag": sum(report.lag.values()),
        "lag_by_partition": {str(p): n for p, n in sorted(report.lag.items())},
        "next_offsets": {str(p): n for p, n in sorted(report.offsets.items())},
        "commits": report.batches,
        "conflicts": report.conflicts,
        "seconds": report.seconds,
        "ingest_report": dg.MetadataValue.json(report.to_dict()),  # `lakehouse ingest --json`
    }
    for table, written in (
        (EVENTS_TABLE, report.events_written),
        (DEAD_LETTER_TABLE, report.dead_letters_written),
    ):
        yield dg.MaterializeResult(
            asset_key=key(table),
            metadata={
                **delta_metadata(lake.open(table), lake.table_uri(table)),
                "rows_written": written,
                **run_facts,
            },
        )


class ErpExtractConfig(dg.Config):
    full_snapshot: bool = Field(
        default=False,
        description="Re-read the whole source table and overwrite bronze with it.",
    )


def _erp_asset(source_table: str) -> dg.AssetsDefinition:
    name = bronze_name(source_table)

    @dg.asset(
        key=["bronze", name],
        deps=[ERP_SOURCES[source_table]],
        group_name="bronze",
        kinds={"sql", "delta"},
        owners=["team:data-engineering"],
        retry_policy=TRANSIENT_RETRY,
        code_version=ERP_CODE,
        description=f"ERP {source_table}, extracted incrementally by ModifiedAt (watermark kept "
        "in the Delta table), with extraction lineage; unreadable rows go to "
        "bronze.erp_quarantine.",
    )
    def erp_table(
        context: dg.AssetExecutionContext,
        config: ErpExtractConfig,
        erp: ErpDatabaseResource,
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        from ingestion.erp import ErpSourceError

        try:
            with failing_fast_when_the_disk_is_full(f"bronze.{name}", lake.lake.uri):
                report = erp.extract(lake.lake, source_table, full=config.full_snapshot)
        except ErpSourceError as exc:  # a missing database or table: retrying cannot help
            raise dg.Failure(str(exc), allow_retries=exc.transient) from exc
        context.log.info(
            f"{source_table}: read {report.rows_read:,}, wrote {report.rows_written:,}, "
            f"quarantined {report.rows_quarantined:,}"
        )
        table = lake.open(f"bronze.{name}")
        facts = {} if table is None else delta_metadata(table, lake.table_uri(f"bronze.{name}"))
        return dg.MaterializeResult(
            metadata={
                **facts,
                "mode": report.mode,
                "rows_read": report.rows_read,
                "rows_written": report.rows_written,
                "rows_quarantined": report.rows_quarantined,
                "watermark": report.watermark_after or "",
                "columns_added": ", ".join(report.columns_added) or "none",
                "seconds": report.seconds,
                "extract_report": dg.MetadataValue.json(report.to_dict()),  # `lakehouse extract`
            }
        )

    return erp_table


erp_assets = [_erp_asset(table) for table in ERP_TABLES]
