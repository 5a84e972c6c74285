from pathlib import Path

import pytest

from lakehouse.core.settings import Settings, SettingsError, env_var_names, load_settings


def test_defaults_hang_off_the_data_root(tmp_path: Path) -> None:
    settings = Settings(data_root=tmp_path)
    assert settings.lake_uri == str(tmp_path / "lake")
    assert settings.erp_db_url == f"sqlite:///{tmp_path / 'erp' / 'erp.sqlite'}"
    assert settings.warehouse_path == tmp_path / "warehouse"
    assert settings.dagster_home == tmp_path / "dagster"
    assert settings.run_dir == tmp_path / "run"
    assert settings.log_dir == tmp_path / "logs"
    assert settings.lake.table_uri("bronze.events") == f"{tmp_path}/lake/bronze/events"
    assert settings.broker_is_embedded and settings.spark_is_embedded


def test_production_values_are_just_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092, kafka-2:9092")
    monkeypatch.setenv("SPARK_REMOTE", "sc://spark-connect:15002")
    monkeypatch.setenv("LAKE_URI", "s3://lakehouse/lake/")
    monkeypatch.setenv("ERP_DB_URL", "postgresql+psycopg://erp@db/erp")
    monkeypatch.setenv("DAGSTER_HOME", "/opt/dagster/home")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.kafka_endpoint == ("kafka-1", 9092)
    assert settings.spark_endpoint == ("spark-connect", 15002)
    assert not settings.broker_is_embedded and not settings.spark_is_embedded
    assert settings.lake.table_uri("gold.dim_date") == "s3://lakehouse/lake/gold/dim_date"
    assert settings.erp_db_url == "postgresql+psycopg://erp@db/erp"
    assert settings.dagster_home == Path("/opt/dagster/home")


def test_relative_data_root_is_resolved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAKEHOUSE_DATA_ROOT", "here")
    assert load_settings().data_root == tmp_path / "here"


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "no-port", "host:port"),
        ("KAFKA_BOOTSTRAP_SERVERS", " , ", "host:port"),
        ("SPARK_REMOTE", "http://spark:15002", "sc://host:15002"),
        ("LAKEHOUSE_SERVICE_START_TIMEOUT", "0", "greater than 0"),
        ("LAKEHOUSE_SERVICE_START_TIMEOUT", "soon", "valid number"),
        ("REDIS_URL", "http://cache:6379", "redis://host:6379/0"),
        ("API_URL", "cache:8090", "http://127.0.0.1:8088"),
        ("API_SERVER", "gunicorn", "granian"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert var in str(excinfo.value)
    assert message in str(excinfo.value)


def test_env_var_names_cover_every_field() -> None:
    assert env_var_names() >= {
        "LAKEHOUSE_DATA_ROOT",
        "KAFKA_BOOTSTRAP_SERVERS",
        "SPARK_REMOTE",
        "LAKE_URI",
        "ERP_DB_URL",
        "WAREHOUSE_PATH",
        "DAGSTER_HOME",
    }
    assert len(env_var_names()) == len(Settings.model_fields)


def test_describe_never_prints_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERP_DB_URL", "postgresql+psycopg://erp:s3cret@db:5432/erp")
    monkeypatch.setenv("SUPERSET_SECRET_KEY", "also-secret")
    described = str(load_settings().describe())
    assert "s3cret" not in described and "also-secret" not in described
    assert "postgresql+psycopg://erp:***@db:5432/erp" in described


def test_an_s3_lake_on_the_embedded_store_gets_its_bucket_and_sail_its_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakehouse.devstack.services import lake_store_env, seaweedfs_command, store_buckets

    store = "http://127.0.0.1:9010"
    local = Settings(data_root=tmp_path, aws_endpoint_url=store, broker_store_url=store)
    assert local.lake_bucket_on_store is None
    assert store_buckets(local) == ["tansu"] and lake_store_env(local) == {}

    on_store = Settings(
        data_root=tmp_path,
        lake_uri="s3://lake/lake",
        aws_endpoint_url=store,
        broker_store_url=store,
    )
    assert on_store.lake_bucket_on_store == "lake"
    assert "-bucket=tansu,lake" in seaweedfs_command(on_store, store_buckets(on_store))
    sail_env = lake_store_env(on_store)
    assert sail_env["AWS_ENDPOINT_URL"] == store and sail_env["AWS_ALLOW_HTTP"] == "true"
    assert sail_env["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] == "false"

    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert lake_store_env(on_store)["AWS_DEFAULT_REGION"] == "us-east-1"

    elsewhere = Settings(
        data_root=tmp_path, lake_uri="s3://lake/lake", aws_endpoint_url="http://minio:9000"
    )
    assert elsewhere.lake_bucket_on_store is None and store_buckets(elsewhere) == ["tansu"]


def test_redis_is_embedded_unless_redis_url_names_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_REDIS_PORT", "6391")
    embedded = load_settings()
    assert embedded.redis_is_embedded
    assert embedded.online_store_url == "redis://127.0.0.1:6391/0"
    monkeypatch.setenv("REDIS_URL", "redis://:s3cret@cache:6379/2")
    external = load_settings()
    assert not external.redis_is_embedded
    assert external.online_store_url == "redis://:s3cret@cache:6379/2"
    assert "s3cret" not in str(external.describe())


def test_settings_pass_to_a_child_process_as_their_variables(tmp_path: Path) -> None:
    settings = Settings(data_root=tmp_path, redis_port=6399, api_workers=3)
    env = settings.as_env()
    assert env["LAKEHOUSE_REDIS_PORT"] == "6399" and env["API_WORKERS"] == "3"
    assert Settings(**env) == settings
