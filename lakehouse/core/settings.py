"""Every endpoint and path the platform uses, with embedded defaults and env-var overrides.

Embedded mode (the default) keeps everything under one data root and talks to services on
127.0.0.1. Production is the same code with other environment values, e.g.
``KAFKA_BOOTSTRAP_SERVERS=kafka:9092 SPARK_REMOTE=sc://spark-connect:15002 LAKE_URI=s3://lake``.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from lakehouse.core.lake import Lake

PROJECT_ROOT = Path(__file__).resolve().parents[2]

_HOST_PORT = re.compile(r"^[A-Za-z0-9._-]+:\d{1,5}$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# The embedded object store (SeaweedFS, bound to 127.0.0.1) has one S3 identity with these keys;
# S3 clients insist on some (without them they ask the EC2 metadata endpoint)
EMBEDDED_STORE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "lakehouse",
    "AWS_SECRET_ACCESS_KEY": "lakehouse",
}
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]+@")


def mask_password(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db (for printing)."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def _http_endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def _env(name: str) -> AliasChoices:
    """Read a field from exactly this environment variable (no prefix games)."""
    return AliasChoices(name)


class Settings(BaseSettings):
    """Platform configuration. Field docs name the environment variable that sets each value."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    data_root: Path = Field(
        default=PROJECT_ROOT / "data",
        validation_alias=_env("LAKEHOUSE_DATA_ROOT"),
        description="LAKEHOUSE_DATA_ROOT: root of every embedded file (lake, ERP DB, logs, pids).",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"),
        description="KAFKA_BOOTSTRAP_SERVERS: comma-separated host:port list.",
    )
    spark_remote: str = Field(
        default="sc://127.0.0.1:15002",
        validation_alias=_env("SPARK_REMOTE"),
        description="SPARK_REMOTE: Spark Connect URL (Sail embedded, Apache Spark in production).",
    )
    spark_unavailable_seconds: float = Field(
        default=10.0,
        ge=0,
        validation_alias=_env("SPARK_UNAVAILABLE_SECONDS"),
        description="SPARK_UNAVAILABLE_SECONDS: how long a call keeps retrying a Spark Connect "
        "server that does not answer (a restart) before the step fails and its own retry "
        "policy takes over; each retry is logged.",
    )
    spark_session_timeout_seconds: int = Field(
        default=14_400,
        ge=60,
        validation_alias=_env("SPARK_SESSION_TIMEOUT_SECONDS"),
        description="SPARK_SESSION_TIMEOUT_SECONDS: how long the embedded Spark Connect server "
        "(Sail) keeps an idle session; a step holding a session through long Python work "
        "(model training) must not lose it.",
    )
    lake_uri: str | None = Field(
        default=None,
        validation_alias=_env("LAKE_URI"),
        description="LAKE_URI: root of the Delta tables; a local path or s3://bucket/prefix. "
        "Default: <data root>/lake.",
    )
    erp_db_url: str | None = Field(
        default=None,
        validation_alias=_env("ERP_DB_URL"),
        description="ERP_DB_URL: SQLAlchemy URL of the ERP source database. "
        "Default: SQLite file <data root>/erp/erp.sqlite.",
    )
    warehouse_path: Path | None = Field(
        default=None,
        validation_alias=_env("WAREHOUSE_PATH"),
        description="WAREHOUSE_PATH: directory of the published DuckDB warehouse. "
        "Default: <data root>/warehouse.",
    )
    dagster_home: Path | None = Field(
        default=None,
        validation_alias=_env("DAGSTER_HOME"),
        description="DAGSTER_HOME: Dagster instance directory. Default: <data root>/dagster.",
    )
    aws_endpoint_url: str | None = Field(
        default=None,
        validation_alias=_env("AWS_ENDPOINT_URL"),
        description="AWS_ENDPOINT_URL: S3-compatible endpoint of the lake when LAKE_URI is s3:// "
        "(e.g. MinIO). Credentials come from the standard AWS_* variables.",
    )
    dagster_postgres_url: str | None = Field(
        default=None,
        validation_alias=_env("DAGSTER_POSTGRES_URL"),
        description="DAGSTER_POSTGRES_URL: PostgreSQL for Dagster's run/event/schedule storage. "
        "Unset: SQLite under DAGSTER_HOME.",
    )
    dagster_executor: Literal["in_process", "multiprocess"] = Field(
        default="in_process",
        validation_alias=_env("DAGSTER_EXECUTOR"),
        description="DAGSTER_EXECUTOR: how a run executes its steps. in_process: one after "
        "another in the run's process (a step costs no start-up; right for a small machine "
        "where Spark Connect does the heavy work); multiprocess: a process per step, in parallel.",
    )
    dagster_url: str = Field(
        default="http://127.0.0.1:3000",
        validation_alias=_env("DAGSTER_URL"),
        description="DAGSTER_URL: the Dagster UI. On loopback, `lakehouse dagster up` runs "
        "`dagster dev` (webserver, daemon, code server); elsewhere it is only checked.",
    )
    superset_url: str = Field(
        default="http://127.0.0.1:8088",
        validation_alias=_env("SUPERSET_URL"),
        description="SUPERSET_URL: where Superset answers. On loopback, `lakehouse bi up` runs "
        "it (embedded); elsewhere it is only checked.",
    )
    superset_admin_user: str = Field(
        default="admin",
        min_length=1,
        validation_alias=_env("SUPERSET_ADMIN_USER"),
        description="SUPERSET_ADMIN_USER: the Superset admin created by `lakehouse bi up`.",
    )
    superset_dashboards_dir: Path = Field(
        default=PROJECT_ROOT / "warehouse" / "superset" / "dashboards",
        validation_alias=_env("SUPERSET_DASHBOARDS_DIR"),
        description="SUPERSET_DASHBOARDS_DIR: the dashboards-as-code YAML `lakehouse bi up` "
        "applies.",
    )
    experiments_dir: Path = Field(
        default=PROJECT_ROOT / "experiments",
        validation_alias=_env("EXPERIMENTS_DIR"),
        description="EXPERIMENTS_DIR: the A/B experiments as code (one YAML per experiment; "
        "`lakehouse ml experiments` checks them).",
    )
    drift_psi_threshold: float = Field(
        default=0.25,
        gt=0,
        validation_alias=_env("DRIFT_PSI_THRESHOLD"),
        description="DRIFT_PSI_THRESHOLD: a model score's population stability index (newest "
        "data against its training data) from which the daily drift check fails.",
    )
    experiment_check_seconds: int = Field(
        default=300,
        ge=10,
        validation_alias=_env("EXPERIMENT_CHECK_SECONDS"),
        description="EXPERIMENT_CHECK_SECONDS: while an experiment runs, how often at most the "
        "experiments sensor evaluates it (when new exposures reached gold).",
    )
    superset_venv: Path = Field(
        default=PROJECT_ROOT / ".venv-superset",
        validation_alias=_env("LAKEHOUSE_SUPERSET_VENV"),
        description="LAKEHOUSE_SUPERSET_VENV: Superset's own virtual environment (`./run` "
        "installs it).",
    )
    superset_metadata_db_url: str | None = Field(
        default=None,
        validation_alias=_env("SUPERSET_METADATA_DB_URL"),
        description="SUPERSET_METADATA_DB_URL: Superset's own metadata database. "
        "Default: SQLite file <data root>/superset/superset.db.",
    )
    superset_secret_key: SecretStr | None = Field(
        default=None,
        validation_alias=_env("SUPERSET_SECRET_KEY"),
        description="SUPERSET_SECRET_KEY: Superset's session signing key. "
        "Unset in embedded mode: generated once and kept under the data root.",
    )
    superset_admin_password: SecretStr | None = Field(
        default=None,
        validation_alias=_env("SUPERSET_ADMIN_PASSWORD"),
        description="SUPERSET_ADMIN_PASSWORD: password of the Superset admin user. "
        "Unset in embedded mode: generated once and kept under the data root.",
    )
    events_topic: str = Field(
        default="clickstream.events",
        min_length=1,
        validation_alias=_env("KAFKA_EVENTS_TOPIC"),
        description="KAFKA_EVENTS_TOPIC: the clickstream topic.",
    )
    broker_storage: str = Field(
        default="s3://tansu/",
        pattern=r"^[a-z][a-z0-9+.-]*://",
        validation_alias=_env("LAKEHOUSE_BROKER_STORAGE"),
        description="LAKEHOUSE_BROKER_STORAGE: where the embedded broker keeps its topics: "
        "s3://<bucket>/ (durable: an acknowledged message survives a broker restart; kept in "
        "the object store at LAKEHOUSE_BROKER_STORE_URL) or memory://tansu/ (faster to start, "
        "but a restart empties every topic).",
    )
    broker_store_url: str = Field(
        default="http://127.0.0.1:9010",
        pattern=r"^https?://",
        validation_alias=_env("LAKEHOUSE_BROKER_STORE_URL"),
        description="LAKEHOUSE_BROKER_STORE_URL: the S3 endpoint of the embedded broker's s3:// "
        "storage. On loopback it is embedded (SeaweedFS under <data root>/broker-store, started "
        "by `lakehouse services up`, on this port and the nine after it); elsewhere it is yours "
        "and the broker takes its credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=_env("REDIS_URL"),
        description="REDIS_URL: the online store (live session state, counters, order feed), "
        "redis://host:port/db. Unset: an embedded redis-server on 127.0.0.1:LAKEHOUSE_REDIS_PORT "
        "with its append-only file under <data root>/redis, started by `lakehouse services up`.",
    )
    redis_port: int = Field(
        default=6390,
        ge=1,
        le=65535,
        validation_alias=_env("LAKEHOUSE_REDIS_PORT"),
        description="LAKEHOUSE_REDIS_PORT: the embedded Redis's port (6390, not 6379, so a "
        "system Redis is never touched).",
    )
    stream_group: str = Field(
        default="lakehouse-stream",
        min_length=1,
        validation_alias=_env("STREAM_CONSUMER_GROUP"),
        description="STREAM_CONSUMER_GROUP: the stream processor's consumer group on the "
        "clickstream (its own: bronze ingestion keeps its offsets in the Delta log).",
    )
    stream_kpi_seconds: float = Field(
        default=2.0,
        ge=0.5,
        le=60,
        validation_alias=_env("STREAM_KPI_SECONDS"),
        description="STREAM_KPI_SECONDS: how often the stream processor publishes the online "
        "store's per-minute counters and order feed as the stream file "
        "(WAREHOUSE_PATH/stream/warehouse.duckdb) that the Real-time dashboard's live charts "
        "read.",
    )
    online_session_ttl_seconds: int = Field(
        default=86_400,
        ge=60,
        validation_alias=_env("ONLINE_SESSION_TTL_SECONDS"),
        description="ONLINE_SESSION_TTL_SECONDS: how long a session's live activity stays in "
        "the online store after its last event.",
    )
    online_customer_ttl_seconds: int = Field(
        default=30 * 86_400,
        ge=60,
        validation_alias=_env("ONLINE_CUSTOMER_TTL_SECONDS"),
        description="ONLINE_CUSTOMER_TTL_SECONDS: how long a customer's recent activity stays "
        "in the online store after their last event.",
    )
    online_dedupe_ttl_seconds: int = Field(
        default=6 * 3_600,
        ge=60,
        validation_alias=_env("ONLINE_DEDUPE_TTL_SECONDS"),
        description="ONLINE_DEDUPE_TTL_SECONDS: how long an applied event_id is remembered, so a "
        "replay or duplicate within it never counts twice (about 60 bytes of Redis memory per "
        "event: 100 M events a day need about 1.5 GB at 6 hours).",
    )
    api_url: str = Field(
        default="http://127.0.0.1:8090",
        validation_alias=_env("API_URL"),
        description="API_URL: where the recommendation API answers. On loopback, `lakehouse "
        "services up --with api` runs it (embedded); elsewhere it is only checked.",
    )
    api_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        validation_alias=_env("API_WORKERS"),
        description="API_WORKERS: worker processes of the recommendation API.",
    )
    api_server: Literal["granian", "uvicorn"] = Field(
        default="granian",
        validation_alias=_env("API_SERVER"),
        description="API_SERVER: the ASGI server of the recommendation API (granian or uvicorn; "
        "bench/serving.py measures both).",
    )
    api_deadline_ms: float = Field(
        default=50.0,
        gt=0,
        validation_alias=_env("API_DEADLINE_MS"),
        description="API_DEADLINE_MS: how long a recommendation waits for the online store; "
        "after it the answer comes from the snapshot alone, marked degraded.",
    )
    api_produce_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        validation_alias=_env("API_PRODUCE_TIMEOUT_SECONDS"),
        description="API_PRODUCE_TIMEOUT_SECONDS: how long POST /v1/events waits for the "
        "broker's acknowledgement before it answers 503 (nothing stored).",
    )
    api_snapshot_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        validation_alias=_env("API_SNAPSHOT_POLL_SECONDS"),
        description="API_SNAPSHOT_POLL_SECONDS: how often the API looks for a newer serving "
        "snapshot (loaded beside the current one, then swapped in).",
    )
    live_events_per_second: float = Field(
        default=20.0,
        gt=0,
        le=100_000,
        validation_alias=_env("LIVE_EVENTS_PER_SECOND"),
        description="LIVE_EVENTS_PER_SECOND: the rate of `lakehouse produce --live` (the demo's "
        "live clickstream: the world's sessions replayed with events stamped now).",
    )
    service_start_timeout: float = Field(
        default=90.0,
        gt=0,
        validation_alias=_env("LAKEHOUSE_SERVICE_START_TIMEOUT"),
        description="LAKEHOUSE_SERVICE_START_TIMEOUT: seconds to wait for an embedded service "
        "to become healthy.",
    )

    silver_lateness_hours: float = Field(
        default=6.0,
        gt=0,
        validation_alias=_env("SILVER_LATENESS_HOURS"),
        description="SILVER_LATENESS_HOURS: how late (event time behind its Kafka timestamp) an "
        "event may arrive and still be placed in silver; later ones are quarantined.",
    )
    silver_future_tolerance_minutes: float = Field(
        default=5.0,
        ge=0,
        validation_alias=_env("SILVER_FUTURE_TOLERANCE_MINUTES"),
        description="SILVER_FUTURE_TOLERANCE_MINUTES: clock skew allowed between an event's time "
        "and its Kafka timestamp before the event counts as from the future.",
    )
    quality_min_kept_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        validation_alias=_env("QUALITY_MIN_KEPT_SHARE"),
        description="QUALITY_MIN_KEPT_SHARE: a warning when a rebuilt partition keeps less than "
        "this share of the rows it replaces.",
    )
    quality_min_dim_share: float = Field(
        default=0.9,
        ge=0,
        le=1,
        validation_alias=_env("QUALITY_MIN_DIM_SHARE"),
        description="QUALITY_MIN_DIM_SHARE: a warning when a rebuilt dimension keeps less than "
        "this share of its rows.",
    )
    quality_max_money: float = Field(
        default=10_000_000,
        gt=0,
        validation_alias=_env("QUALITY_MAX_MONEY"),
        description="QUALITY_MAX_MONEY: a warning for prices and amounts above this (in the ERP's "
        "currency).",
    )
    quality_price_to_list_min: float = Field(
        default=0.5,
        ge=0,
        validation_alias=_env("QUALITY_PRICE_TO_LIST_MIN"),
        description="QUALITY_PRICE_TO_LIST_MIN: a warning when more than 0.1 % of sale lines sell "
        "below this share of the list price.",
    )
    quality_price_to_list_max: float = Field(
        default=2.0,
        gt=0,
        validation_alias=_env("QUALITY_PRICE_TO_LIST_MAX"),
        description="QUALITY_PRICE_TO_LIST_MAX: a warning when more than 0.1 % of sale lines sell "
        "above this multiple of the list price.",
    )
    quality_max_quantity: int = Field(
        default=1_000,
        ge=1,
        validation_alias=_env("QUALITY_MAX_QUANTITY"),
        description="QUALITY_MAX_QUANTITY: a warning for events with a larger quantity.",
    )
    partitions_start_date: dt.date = Field(
        default=dt.date(2024, 1, 1),
        validation_alias=_env("PARTITIONS_START_DATE"),
        description="PARTITIONS_START_DATE: first day of the daily partitions of the "
        "time-based silver and gold assets in Dagster (what a backfill can pick from).",
    )
    transform_batch_rows: int = Field(
        default=2_000_000,
        gt=0,
        validation_alias=_env("TRANSFORM_BATCH_ROWS"),
        description="TRANSFORM_BATCH_ROWS: source rows per batch when silver/gold rebuild many "
        "date partitions (a first build, --full, a long backfill); bounds Spark's memory.",
    )
    interaction_half_life_days: float = Field(
        default=30.0,
        gt=0,
        validation_alias=_env("INTERACTION_HALF_LIFE_DAYS"),
        description="INTERACTION_HALF_LIFE_DAYS: time decay of implicit feedback in "
        "gold.customer_product_interactions.",
    )
    ml_test_days: int = Field(
        default=14,
        ge=1,
        validation_alias=_env("ML_TEST_DAYS"),
        description="ML_TEST_DAYS: the recommenders are trained up to this many days before "
        "the newest data and evaluated on the purchases of those days (gold."
        "customer_product_features snapshots the ranker's training cutoffs of these windows).",
    )
    ml_churn_window_days: int = Field(
        default=90,
        ge=1,
        validation_alias=_env("ML_CHURN_WINDOW_DAYS"),
        description="ML_CHURN_WINDOW_DAYS: churned = no purchase in this many days after the "
        "snapshot; also the CLV horizon (shortened when the history is too short).",
    )
    ml_propensity_window_days: int = Field(
        default=30,
        ge=1,
        validation_alias=_env("ML_PROPENSITY_WINDOW_DAYS"),
        description="ML_PROPENSITY_WINDOW_DAYS: purchase propensity = a purchase in this many "
        "days after the snapshot (shortened when the history is too short).",
    )
    ml_champion_metric: str = Field(
        default="ndcg@10",
        pattern=r"^(precision|recall|ndcg|map|hit_rate)@10$",
        validation_alias=_env("ML_CHAMPION_METRIC"),
        description="ML_CHAMPION_METRIC: the offline metric that picks the recommender feeding "
        "gold.customer_recommendations (precision|recall|ndcg|map|hit_rate @10).",
    )
    ml_champion_task: Literal["all", "new"] = Field(
        default="all",
        validation_alias=_env("ML_CHAMPION_TASK"),
        description="ML_CHAMPION_TASK: the task the champion is chosen on, in the validation "
        "window: all (every product bought, repeat purchases included) or new (products the "
        "customer had not bought before); both are reported for every model.",
    )
    ml_recommendations: int = Field(
        default=10,
        ge=1,
        le=100,
        validation_alias=_env("ML_RECOMMENDATIONS"),
        description="ML_RECOMMENDATIONS: products per customer in gold.customer_recommendations.",
    )
    ml_ranker_training_customers: int = Field(
        default=20_000,
        ge=0,
        validation_alias=_env("ML_RANKER_TRAINING_CUSTOMERS"),
        description="ML_RANKER_TRAINING_CUSTOMERS: the learned ranker learns from at most this "
        "many buyers of each training window (a seeded sample; 0 = every buyer): bounds its "
        "fit on a large customer base.",
    )
    ml_ranker_generator_customers: int = Field(
        default=100_000,
        ge=0,
        validation_alias=_env("ML_RANKER_GENERATOR_CUSTOMERS"),
        description="ML_RANKER_GENERATOR_CUSTOMERS: the candidate generators of each training "
        "cutoff of the learned ranker are fitted on the histories of at most this many "
        "customers (the window's sampled buyers and a seeded sample of the others; 0 = every "
        "customer): bounds its fit on a large customer base. Those serving the published lists "
        "see every customer.",
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        bad = [s for s in servers if not _HOST_PORT.match(s)]
        if not servers or bad:
            raise ValueError(f"expected a comma-separated list of host:port, got {value!r}")
        return ",".join(servers)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            shown = mask_password(value)
            raise ValueError(f"expected a URL like redis://host:6379/0, got {shown!r}")
        return value

    @field_validator("spark_remote")
    @classmethod
    def _check_spark_remote(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "sc" or not parts.hostname:
            raise ValueError(f"expected a Spark Connect URL like sc://host:15002, got {value!r}")
        return value

    @field_validator("dagster_postgres_url")
    @classmethod
    def _check_dagster_postgres_url(cls, value: str | None) -> str | None:
        # dagster-postgres needs psycopg2: through psycopg 3 (SQLAlchemy 2.1's default driver for
        # a bare postgresql://) its NOTIFY statements fail with a syntax error
        if value is not None and not value.startswith("postgresql+psycopg2://"):
            raise ValueError(
                "expected postgresql+psycopg2://user:password@host:5432/db (dagster-postgres "
                f"needs the psycopg2 driver), got {mask_password(value)!r}"
            )
        return value

    @field_validator("superset_url", "dagster_url", "api_url")
    @classmethod
    def _check_http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected a URL like http://127.0.0.1:8088, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        # Defaults that hang off the data root are derived here so that moving the data root
        # moves everything with it. frozen=True, hence object.__setattr__.
        root = self.data_root.expanduser().resolve()
        object.__setattr__(self, "data_root", root)
        if self.lake_uri is None:
            object.__setattr__(self, "lake_uri", str(root / "lake"))
        if self.erp_db_url is None:
            object.__setattr__(self, "erp_db_url", f"sqlite:///{root / 'erp' / 'erp.sqlite'}")
        if self.warehouse_path is None:
            object.__setattr__(self, "warehouse_path", root / "warehouse")
        if self.dagster_home is None:
            object.__setattr__(self, "dagster_home", root / "dagster")
        if self.superset_metadata_db_url is None:
            url = f"sqlite:///{root / 'superset' / 'superset.db'}"
            object.__setattr__(self, "superset_metadata_db_url", url)
        return self

    # -- derived locations --------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        """Pid files of embedded services."""
        return self.data_root / "run"

    @property
    def log_dir(self) -> Path:
        """Log files of embedded services."""
        return self.data_root / "logs"

    @property
    def generated_dir(self) -> Path:
        """Output of `lakehouse generate`: event files, ground truth, manifest."""
        return self.data_root / "generated"

    @property
    def kafka_endpoint(self) -> tuple[str, int]:
        """First bootstrap server as (host, port)."""
        host, port = self.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)
        return host, int(port)

    @property
    def spark_endpoint(self) -> tuple[str, int]:
        parts = urlsplit(self.spark_remote)
        return parts.hostname or "127.0.0.1", parts.port or 15002

    @property
    def broker_is_embedded(self) -> bool:
        """The broker is ours to run when the only bootstrap server is on loopback."""
        servers = self.kafka_bootstrap_servers.split(",")
        return len(servers) == 1 and self.kafka_endpoint[0] in _LOOPBACK

    @property
    def broker_store_endpoint(self) -> tuple[str, int]:
        return _http_endpoint(self.broker_store_url)

    @property
    def broker_store_is_embedded(self) -> bool:
        """The broker's object store is ours to run: an embedded broker on s3:// storage whose
        store URL is on loopback."""
        return (
            self.broker_is_embedded
            and self.broker_storage.startswith("s3://")
            and self.broker_store_endpoint[0] in _LOOPBACK
        )

    @property
    def lake_bucket_on_store(self) -> str | None:
        """The bucket of an s3:// lake kept in the embedded object store (AWS_ENDPOINT_URL is
        the store's URL), which `lakehouse services up` then creates; None otherwise."""
        lake = urlsplit(str(self.lake_uri))
        if lake.scheme not in ("s3", "s3a") or not self.aws_endpoint_url:
            return None
        if not self.broker_store_is_embedded:
            return None
        same = _http_endpoint(self.aws_endpoint_url) == self.broker_store_endpoint
        return lake.netloc if same else None

    @property
    def broker_store_dir(self) -> Path:
        return self.data_root / "broker-store"

    @property
    def api_endpoint(self) -> tuple[str, int]:
        return _http_endpoint(self.api_url)

    @property
    def api_is_embedded(self) -> bool:
        return self.api_endpoint[0] in _LOOPBACK

    @property
    def redis_is_embedded(self) -> bool:
        """The online store is ours to run unless REDIS_URL names one."""
        return self.redis_url is None

    @property
    def online_store_url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def redis_dir(self) -> Path:
        """The embedded Redis's append-only file."""
        return self.data_root / "redis"

    @property
    def spark_is_embedded(self) -> bool:
        return self.spark_endpoint[0] in _LOOPBACK

    @property
    def superset_endpoint(self) -> tuple[str, int]:
        return _http_endpoint(self.superset_url)

    @property
    def superset_is_embedded(self) -> bool:
        return self.superset_endpoint[0] in _LOOPBACK

    @property
    def dagster_endpoint(self) -> tuple[str, int]:
        return _http_endpoint(self.dagster_url)

    @property
    def dagster_is_embedded(self) -> bool:
        return self.dagster_endpoint[0] in _LOOPBACK

    @property
    def lake(self) -> Lake:
        """The Delta Lake at LAKE_URI, with the storage options it needs (and, for a lake in
        the embedded object store, that store's credentials)."""
        credentials = EMBEDDED_STORE_CREDENTIALS if self.lake_bucket_on_store else None
        return Lake.at(str(self.lake_uri), self.aws_endpoint_url, credentials)

    def as_env(self) -> dict[str, str]:
        """These settings as the environment variables that give them (for a child process)."""
        env = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[field.validation_alias.choices[0]] = str(value)  # type: ignore[union-attr]
        return env

    def describe(self) -> dict[str, str]:
        """Resolved values, for `lakehouse settings` and the demo's summary."""
        return {
            "data_root": str(self.data_root),
            "kafka_bootstrap_servers": self.kafka_bootstrap_servers,
            "events_topic": self.events_topic,
            "spark_remote": self.spark_remote,
            "lake_uri": str(self.lake_uri),
            "erp_db_url": mask_password(str(self.erp_db_url)),
            "warehouse_path": str(self.warehouse_path),
            "dagster_home": str(self.dagster_home),
            "dagster_storage": "postgres" if self.dagster_postgres_url else "sqlite",
            "dagster_executor": self.dagster_executor,
            "dagster_url": self.dagster_url,
            "superset_url": self.superset_url,
            "superset_metadata_db_url": mask_password(str(self.superset_metadata_db_url)),
            "broker_storage": self.broker_storage,
            "broker_store_url": self.broker_store_url,
            "online_store_url": mask_password(self.online_store_url),
            "generated": str(self.generated_dir),
            "logs": str(self.log_dir),
            "pids": str(self.run_dir),
        }


class SettingsError(RuntimeError):
    """Configuration from the environment is invalid; the message names the variables."""


def env_var_names() -> set[str]:
    """Every environment variable the settings read (used to check docker-compose)."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        names.update(field.validation_alias.choices)  # type: ignore[union-attr]
    return names


def load_settings() -> Settings:
    """Read settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings()
    except ValidationError as exc:
        # Errors are located by the environment variable name (the field's alias).
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None
