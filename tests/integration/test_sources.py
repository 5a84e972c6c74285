"""The two sources as real systems: the ERP database (SQLite and PostgreSQL) and the clickstream
on the embedded broker, filled by the real `lakehouse generate` and `lakehouse produce`."""

from __future__ import annotations

import csv
import datetime as dt
import time
import uuid
from collections import defaultdict

import orjson
import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, TopicPartition

from ingestion.erp import ERP_TABLES
from lakehouse.core.kafka import client_config
from streaming.contract import validate_event
from tests.conftest import cli_json, isolated_env, run_cli

pytestmark = pytest.mark.integration

TABLES = ERP_TABLES


def _dump(url: str) -> dict[str, list[tuple]]:
    """Every ERP table, rows sorted, values normalised across SQLite and PostgreSQL."""
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine, only=TABLES)
    out = {}
    with engine.connect() as conn:
        for name in TABLES:
            rows = conn.execute(sa.select(meta.tables[name])).all()
            out[name] = sorted(
                tuple(
                    round(float(v), 2)
                    if isinstance(v, float) or type(v).__name__ == "Decimal"
                    else v
                    for v in row
                )
                for row in rows
            )
    engine.dispose()
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = isolated_env(tmp_path_factory.mktemp("sources"))
    report = cli_json("generate", "--preset", "tiny", env=env)
    assert report["days_written"] == 21 and report["events_written"] > 20_000
    return env


def test_erp_in_postgres_is_identical_to_sqlite(generated, postgres_url, tmp_path) -> None:
    env = isolated_env(tmp_path) | {"ERP_DB_URL": postgres_url}
    cli_json("generate", "--preset", "tiny", "--no-events", env=env)
    sqlite_url = f"sqlite:///{generated['LAKEHOUSE_DATA_ROOT']}/erp/erp.sqlite"
    in_sqlite, in_postgres = _dump(sqlite_url), _dump(postgres_url)
    for table in TABLES:
        assert in_postgres[table] == in_sqlite[table], table
    assert len(in_postgres["MV_Sales"]) > 500


def test_interrupted_generation_resumes_and_history_is_visible(tmp_path) -> None:
    env = isolated_env(tmp_path)
    url = f"sqlite:///{tmp_path}/erp/erp.sqlite"
    first = cli_json("generate", "--preset", "tiny", "--until", "2025-09-11", env=env)
    assert first["days_written"] == 10 and first["ground_truth_dir"] is None
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text('SELECT "CustomerID", "CityID" FROM "MV_SetupCustomer"'))
        before = {customer_id: city_id for customer_id, city_id in rows}
    second = cli_json("generate", "--preset", "tiny", env=env)
    assert second["days_skipped"] == 10 and second["days_written"] == 11
    with engine.connect() as conn:
        after = conn.execute(
            sa.text('SELECT "CustomerID", "CityID", "ModifiedAt" FROM "MV_SetupCustomer"')
        ).all()
    moved = [(c, m) for c, city, m in after if c in before and before[c] != city]
    assert moved, "some customers move city in the second half of the window"
    assert all(dt.datetime.fromisoformat(str(m)) >= dt.datetime(2025, 9, 11) for _, m in moved)

    one_shot = isolated_env(tmp_path / "one-shot")
    cli_json("generate", "--preset", "tiny", env=one_shot)
    assert _dump(url) == _dump(f"sqlite:///{tmp_path}/one-shot/erp/erp.sqlite")


def test_a_different_world_needs_reset(generated) -> None:
    result = run_cli("generate", "--preset", "tiny", "--seed", "5", env=generated, check=False)
    assert result.returncode == 1 and "--reset" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["produce", "--duplicates", "0.9"], "between 0 and 0.5"),
        (["produce", "--key", "city"], "session or customer"),
        (["generate", "--until", "2031-01-01"], "outside the simulated window"),
        (["generate", "--preset", "huge"], "unknown preset"),
        (["generate", "--customers", "3"], "customers must be at least 10"),
    ],
)
def test_bad_arguments_are_rejected_clearly(tmp_path, args, message) -> None:
    result = run_cli(*args, env=isolated_env(tmp_path), check=False)
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split())


def _consume_all(servers: str, topic: str, expected: int, timeout_s: float = 120.0) -> list:
    """Every message of the topic once, keyed by (partition, offset).

    A record delivered twice must not end the read early, nor a quiet moment of the broker,
    so the test collects positions until it has them all (or the deadline passes).
    """
    consumer = Consumer(
        client_config(
            servers, **{"group.id": f"t-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False}
        )
    )
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
    by_position = {}
    deadline = time.monotonic() + timeout_s
    while len(by_position) < expected and time.monotonic() < deadline:
        for m in consumer.consume(10_000, timeout=0.5):
            if not m.error():
                by_position[(m.partition(), m.offset())] = m
    consumer.close()
    return list(by_position.values())


def test_produced_clickstream_reconciles_with_erp_invoices(generated, platform_env, tmp_path):
    env = generated | {"KAFKA_BOOTSTRAP_SERVERS": platform_env["KAFKA_BOOTSTRAP_SERVERS"]}
    topic = f"clicks-{uuid.uuid4().hex[:8]}"
    acks = tmp_path / "acks.csv"
    report = cli_json(
        "produce",
        "--topic",
        topic,
        "--partitions",
        "3",
        "--duplicates",
        "0.01",
        "--late",
        "0.01",
        "--malformed",
        "0.01",
        "--drift",
        "0.01",
        "--ack-log",
        str(acks),
        env=env,
    )
    assert report["acknowledged"] == report["messages"]
    with open(acks) as handle:
        acked = list(csv.DictReader(handle))
    assert len(acked) == report["messages"]

    messages = _consume_all(env["KAFKA_BOOTSTRAP_SERVERS"], topic, report["messages"])
    assert len(messages) == report["messages"]
    assert {(int(a["partition"]), int(a["offset"])) for a in acked} == {
        (m.partition(), m.offset()) for m in messages
    }

    good: dict[str, dict] = {}
    partitions_of_session = defaultdict(set)
    rejected = 0
    for m in messages:
        try:
            event = orjson.loads(m.value())
        except orjson.JSONDecodeError:
            rejected += 1
            continue
        if validate_event(event) is not None:
            rejected += 1
            continue
        good[event["event_id"]] = event
        partitions_of_session[event["session_id"]].add(m.partition())
        assert m.key() == event["session_id"].encode()
    assert len(good) == report["events"]
    assert rejected == sum(v for k, v in report["kinds"].items() if k.startswith("malformed"))
    assert all(len(p) == 1 for p in partitions_of_session.values())

    engine = sa.create_engine(f"sqlite:///{env['LAKEHOUSE_DATA_ROOT']}/erp/erp.sqlite")
    with engine.connect() as conn:
        lines = conn.execute(
            sa.text(
                'SELECT s."InvoiceID", d."ProductID", d."Quantity", d."UnitPrice", s."CustomerID", '
                's."InvoiceDate" FROM "MV_Sales" s JOIN "MV_SalesDetail" d USING ("InvoiceID") '
                """WHERE s."Channel" IN ('Web', 'App') AND s."InvoiceType" = 'Sale'"""
            )
        ).all()
    erp = {
        (inv, prod): (qty, price, cust, str(when)) for inv, prod, qty, price, cust, when in lines
    }
    purchases = {
        (e["order_id"], e["product_id"]): e for e in good.values() if e["event_type"] == "purchase"
    }
    assert set(purchases) == set(erp), "every online order line has exactly one purchase event"
    for key, event in purchases.items():
        qty, price, customer, when = erp[key]
        assert (event["quantity"], event["customer_id"]) == (qty, customer)
        assert event["price"] == pytest.approx(price)
        event_time = dt.datetime.fromisoformat(event["event_time"].replace("Z", ""))
        assert dt.datetime.fromisoformat(when) == event_time


def test_event_files_are_written_even_when_the_erp_is_already_complete(tmp_path) -> None:
    env = isolated_env(tmp_path)
    first = cli_json("generate", "--preset", "tiny", "--no-events", env=env)
    assert first["events_written"] == 0 and first["days_written"] == 21
    second = cli_json("generate", "--preset", "tiny", env=env)
    assert second["days_written"] == 0 and second["events_written"] > 20_000
    assert len(list((tmp_path / "generated" / "events").glob("date=*/events.jsonl.gz"))) == 21
    third = cli_json("generate", "--preset", "tiny", env=env)
    assert third["events_written"] == 0 and third["seconds"] < 5  # complete: nothing simulated
