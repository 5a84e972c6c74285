"""The recommendation API as it runs (granian, two workers) on the tiny world's serving snapshot,
the real Redis and the real broker: answers, read-your-writes events, bad input, a snapshot
swap under load, and degraded answers when Redis or the broker is gone."""

from __future__ import annotations

import datetime as dt
import math
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from lakehouse.core.kafka import EVENTS_TOPIC_PARTITIONS, client_config
from lakehouse.core.settings import PROJECT_ROOT, Settings
from lakehouse.devstack.services import ServiceManager, define_services
from ml.intent import FEATURES
from serving.snapshot import CURRENT, MANIFEST, current_version, load_snapshot, publish_snapshot
from streaming.contract import validate_event
from tests.conftest import World, free_port, replace_settings

pytestmark = pytest.mark.integration

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "storefront"


def call(method: str, url: str, body: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def api_manager(settings: Settings) -> ServiceManager:
    """Only the API, for settings whose other services are the shared platform's."""
    return ServiceManager(settings, [s for s in define_services(settings) if s.name == "api"])


@pytest.fixture(scope="module")
def settings(world: World, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The world's lake on the platform's broker and Redis, with an API and a topic of its own
    (its pid file and logs outside the world)."""
    return replace_settings(
        world.settings,
        data_root=tmp_path_factory.mktemp("api"),
        lake_uri=str(world.settings.lake_uri),
        events_topic=f"api-{uuid.uuid4().hex[:8]}",
        api_url=f"http://127.0.0.1:{free_port()}",
        api_snapshot_poll_seconds=0.5,
    )


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[str]:
    manager = api_manager(settings)
    manager.up(include=("api",))
    try:
        yield settings.api_url
    finally:
        manager.down()


def event(session_id: str, product_id: int, customer_id: int | None = None) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "event_type": "product_view",
        "session_id": session_id,
        "product_id": product_id,
        "device": "mobile_web",
        "schema_version": "1.0",
        **({"customer_id": customer_id} if customer_id else {}),
    }


def test_a_known_customer_gets_the_champions_list_with_reasons(
    api: str, settings: Settings
) -> None:
    snapshot = load_snapshot(settings.lake)
    customer = int(snapshot.lists.keys[0])
    status, health = call("GET", f"{api}/health")
    assert status == 200 and health["snapshot_version"] == current_version(settings.lake)

    status, body = call("GET", f"{api}/v1/recommendations/{customer}?k=5")
    assert status == 200, body
    assert body["strategy"] == "personal" and not body["degraded"] and body["known_customer"]
    assert len(body["items"]) == 5 and all(i["reason"] and i["name"] for i in body["items"])
    expected = snapshot.lists.values["product_id"][snapshot.lists.rows(customer)].tolist()
    sellable = [p for p in expected if p in snapshot.products]
    assert [i["product_id"] for i in body["items"]] == sellable[:5]
    assert body["snapshot_version"] == snapshot.version

    status, unknown = call("GET", f"{api}/v1/recommendations/{10**12}?k=3")
    assert status == 200 and unknown["strategy"] == "popular" and not unknown["known_customer"]
    assert len(unknown["items"]) == 3


def test_a_posted_event_is_acknowledged_by_kafka_and_seen_by_the_next_request(
    api: str, settings: Settings
) -> None:
    # the API created its topic at start, before any produce could race the broker's creation
    consumer = Consumer(client_config(settings.kafka_bootstrap_servers, **{"group.id": "t"}))
    topic = consumer.list_topics(settings.events_topic, timeout=10).topics[settings.events_topic]
    assert topic.error is None and len(topic.partitions) == EVENTS_TOPIC_PARTITIONS

    snapshot = load_snapshot(settings.lake)
    assert snapshot.session_model is not None  # the world trained one
    product = next(p for p in snapshot.products if snapshot.session_model.recommend([p], 5))
    session = f"s-{uuid.uuid4().hex[:8]}"
    sent = event(session, product)
    status, ack = call("POST", f"{api}/v1/events", orjson.dumps(sent))
    assert status == 202, ack
    assert ack["applied_online"] and ack["event_id"] == sent["event_id"]

    status, body = call("GET", f"{api}/v1/recommendations?session_id={session}&k=5")
    assert status == 200 and body["strategy"] == "session"
    name = snapshot.products[product].name
    assert body["items"][0]["reason"] == f"often viewed with {name}"
    predicted = [p for p, _ in snapshot.session_model.recommend([product], 20)]
    assert body["items"][0]["product_id"] == predicted[0]

    consumer.assign([TopicPartition(settings.events_topic, ack["partition"], ack["offset"])])
    message = consumer.consume(1, timeout=10)[0]
    consumer.close()
    assert orjson.loads(message.value()) == sent


def test_every_answer_is_an_impression_in_kafka_and_a_click_is_an_event(
    api: str, settings: Settings
) -> None:
    consumer = Consumer(client_config(settings.kafka_bootstrap_servers, **{"group.id": "t"}))
    topic = settings.events_topic
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = [
        TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p))[1])
        for p in partitions
    ]
    customer = int(load_snapshot(settings.lake).lists.keys[0])
    session = f"s-{uuid.uuid4().hex[:8]}"
    status, body = call(
        "GET", f"{api}/v1/recommendations/{customer}?session_id={session}&k=4&device=mobile_web"
    )
    assert status == 200, body

    consumer.assign(ends)
    found, deadline = None, time.monotonic() + 15
    while found is None and time.monotonic() < deadline:
        for message in consumer.consume(100, timeout=1):
            value = orjson.loads(message.value())
            if value.get("request_id") == body["request_id"]:
                found = value
    consumer.close()
    assert found is not None, "no impression in Kafka within 15 s"
    assert validate_event(found) is None
    assert found["event_type"] == "recommendation_impression"
    assert (found["session_id"], found["customer_id"], found["device"]) == (
        session,
        customer,
        "mobile_web",
    )
    assert found["recommended_product_ids"] == [i["product_id"] for i in body["items"]]
    champion = body["model"]
    assert found["model_version"] == (
        f"{body['snapshot_version']}/{champion['model']}@{champion['model_version']}"
    )

    click = {
        **event(session, body["items"][1]["product_id"], customer),
        "event_type": "recommendation_click",
        "request_id": body["request_id"],
        "position": 2,
        "schema_version": "1.1",
    }
    status, ack = call("POST", f"{api}/v1/events", orjson.dumps(click))
    assert status == 202, ack
    assert not ack["applied_online"]  # what was shown is not the session's activity
    status, again = call("GET", f"{api}/v1/recommendations/{customer}?session_id={session}&k=4")
    assert [i["product_id"] for i in again["items"]] == [i["product_id"] for i in body["items"]]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("GET", "/v1/recommendations/abc", None, 422, "customer_id"),
        ("GET", "/v1/recommendations/0", None, 422, "customer_id"),
        ("GET", "/v1/recommendations/1?k=0", None, 422, "k"),
        ("GET", "/v1/recommendations/1?k=101", None, 422, "k"),
        ("GET", "/v1/recommendations/1?session_id=" + "x" * 65, None, 422, "session_id"),
        (
            "GET",
            "/v1/recommendations/1?context_product_id=999999999",
            None,
            404,
            "context_product_id",
        ),
        ("GET", "/v1/products/999999999/similar", None, 404, "product_id"),
        ("GET", "/v1/recommendations", None, 422, "session_id"),
        ("GET", "/v1/recommendations/1?device=fridge", None, 422, "device"),
        ("POST", "/v1/events", b"not json", 400, "body"),
        ("POST", "/v1/events", b'{"event_type": "purchase"}', 422, "event_id"),
        ("POST", "/v1/events", b"[" + b" " * 70_000 + b"]", 413, "body"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(
    api: str, method: str, path: str, body: bytes | None, status: int, field: str
) -> None:
    got, answer = call(method, f"{api}{path}", body)
    assert (got, answer["error"]["field"]) == (status, field), answer
    assert answer["error"]["reason"]


def test_a_new_snapshot_is_swapped_in_under_load_without_a_failed_request(
    api: str, settings: Settings
) -> None:
    customer = int(load_snapshot(settings.lake).lists.keys[0])
    versions, failures = set(), []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            status, body = call("GET", f"{api}/v1/recommendations/{customer}?k=10")
            if status != 200:
                failures.append((status, body))
            else:
                versions.add(body["snapshot_version"])

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    new = publish_snapshot(settings.lake)["version"]
    deadline = time.monotonic() + 20
    while new not in versions and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # both workers on the new one
    stop.set()
    for thread in threads:
        thread.join()
    assert not failures
    assert new in versions and len(versions) == 2


def test_without_redis_or_the_broker_answers_degrade_clearly(settings: Settings, api: str) -> None:
    dead = replace_settings(
        settings,
        data_root=settings.data_root / "degraded",
        api_url=f"http://127.0.0.1:{free_port()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        lake_uri=str(settings.lake_uri),
    )
    customer = int(load_snapshot(settings.lake).lists.keys[0])
    manager = api_manager(dead)
    manager.up(include=("api",))
    try:
        status, body = call("GET", f"{dead.api_url}/v1/recommendations/{customer}?session_id=s&k=4")
        assert status == 200 and body["degraded"] and len(body["items"]) == 4
        assert "online store unavailable" in body["degraded_reason"]
        assert body["strategy"] == "personal"

        started = time.monotonic()
        status, body = call("POST", f"{dead.api_url}/v1/events", orjson.dumps(event("s", 1)))
        assert status == 503 and body["error"]["field"] == "kafka"
        assert "nothing stored" in body["error"]["reason"]
        assert time.monotonic() - started < 10

        status, metrics = 200, urllib.request.urlopen(f"{dead.api_url}/metrics").read().decode()
        assert 'api_degraded_total{cause="online store unavailable"}' in metrics
        assert "api_events_refused_total{cause=" in metrics
        assert "api_request_seconds_bucket" in metrics
    finally:
        manager.down()
    assert call("GET", f"{api}/health")[0] == 200  # the other API is untouched


def test_the_live_view_streams_as_server_sent_events(api: str) -> None:
    """What the storefront's live tiles read: an event at once, then one every interval."""
    started = time.monotonic()
    with urllib.request.urlopen(f"{api}/v1/live/stream", timeout=30) as response:  # noqa: S310
        assert response.headers["content-type"].startswith("text/event-stream")
        first = response.readline()
        assert time.monotonic() - started < 5
        assert response.readline() == b"\n"
        second = response.readline()
    for line in (first, second):
        assert line.startswith(b"data: ")
        live = orjson.loads(line.removeprefix(b"data: "))
        assert len(live["minutes"]) == 15 and {"events", "orders", "revenue"} <= set(
            live["minutes"][-1]
        )


def test_the_storefront_page_reacts_to_a_click_within_a_second(
    api: str, settings: Settings
) -> None:
    """The storefront in Chromium: viewing a product changes the recommendations and their
    reasons within a second."""
    from playwright.sync_api import sync_playwright

    from warehouse.superset.browser import CHROMIUM, CHROMIUM_ARGS

    customer = int(load_snapshot(settings.lake).lists.keys[0])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{api}/demo?customer={customer}")
            cards = page.locator("[data-testid=recommendations] .card")
            cards.first.wait_for()
            before = "|".join(cards.locator(".name").all_inner_texts())
            viewed = cards.nth(2)
            name = viewed.locator(".name").inner_text()
            viewed.locator("button[data-action=product_view]").click()
            page.wait_for_function(
                "(before) => [...document.querySelectorAll("
                "'[data-testid=recommendations] .card .name')]"
                ".map((e) => e.textContent).join('|') !== before",
                arg=before,
                timeout=1_000,  # the target: the next recommendations within a second
            )
            reasons = cards.locator(".reason").all_inner_texts()
            assert f"often viewed with {name}" in reasons
            assert name in page.locator("[data-testid=session]").inner_text()
            page.screenshot(path=ARTIFACTS / "storefront.png", full_page=True)
        finally:
            browser.close()


EXPERIMENT = """name: half_popular
enabled: true
variants:
  - {name: control, weight: 0.5, recommender: champion}
  - {name: popular, weight: 0.5, recommender: popularity}
control: control
unit: session
start: 2026-01-01T00:00:00Z
"""


def test_a_running_experiment_serves_each_session_its_sticky_variant(
    api: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("experiments")
    (folder / "half_popular.yaml").write_text(EXPERIMENT)
    with_experiment = replace_settings(
        settings,
        data_root=tmp_path_factory.mktemp("api-experiment"),
        lake_uri=str(settings.lake_uri),
        api_url=f"http://127.0.0.1:{free_port()}",
        experiments_dir=folder,
    )
    snapshot = load_snapshot(settings.lake)
    customer = int(snapshot.lists.keys[0])
    city = snapshot.cities.get(customer)
    trending = [p for p in snapshot.popular(city) if p in snapshot.products][:5]
    manager = api_manager(with_experiment)
    manager.up(include=("api",))
    try:
        url = with_experiment.api_url
        seen: dict[str, list[dict]] = {}
        for n in range(40):
            session = f"exp-{n}"
            status, body = call(
                "GET", f"{url}/v1/recommendations/{customer}?session_id={session}&k=5"
            )
            assert status == 200, body
            assert body["experiment"]["name"] == "half_popular"
            seen.setdefault(body["experiment"]["variant"], []).append(body)
            again = call("GET", f"{url}/v1/recommendations/{customer}?session_id={session}&k=5")[1]
            assert again["experiment"] == body["experiment"]  # sticky
        assert set(seen) == {"control", "popular"}
        assert all(b["strategy"] == "popular" for b in seen["popular"])
        assert all([i["product_id"] for i in b["items"]] == trending for b in seen["popular"])
        assert all(b["strategy"].startswith("personal") for b in seen["control"])
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()  # noqa: S310
        assert (
            'api_experiment_answers_total{experiment="half_popular",variant="popular"}' in metrics
        )
    finally:
        manager.down()
    # the shared API (the shipped experiment is declared but not enabled) runs none
    status, body = call("GET", f"{api}/v1/recommendations/{customer}?k=3")
    assert status == 200 and body["experiment"] is None


def test_a_promoted_variant_is_served_to_everyone_once_its_experiment_is_decided(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The snapshot carries a decision (popularity won half_popular): the experiment, though
    declared, is served no more, and everyone gets the winner."""
    snapshot = load_snapshot(settings.lake)
    lake = tmp_path_factory.mktemp("decided-lake")
    source = Path(str(settings.lake_uri)) / "serving" / "snapshots" / snapshot.version
    target = lake / "serving" / "snapshots" / snapshot.version
    shutil.copytree(source, target)
    decision = {
        "experiment": "half_popular",
        "status": "promote",
        "winner": "popular",
        "recommender": "popularity",
        "session_share": None,
        "reason": "popular beat control",
        "decided_at": "2026-01-02T00:00:00+00:00",
    }
    manifest = orjson.loads((target / MANIFEST).read_bytes())
    (target / MANIFEST).write_bytes(
        orjson.dumps({**manifest, "experiments": {"half_popular": decision}})
    )
    (lake / "serving" / CURRENT).write_text(snapshot.version)
    folder = tmp_path_factory.mktemp("decided-experiments")
    (folder / "half_popular.yaml").write_text(EXPERIMENT)
    decided = replace_settings(
        settings,
        data_root=tmp_path_factory.mktemp("api-decided"),
        lake_uri=str(lake),
        api_url=f"http://127.0.0.1:{free_port()}",
        experiments_dir=folder,
    )
    customer = int(snapshot.lists.keys[0])
    trending = [
        p for p in snapshot.popular(snapshot.cities.get(customer)) if p in snapshot.products
    ]
    manager = api_manager(decided)
    manager.up(include=("api",))
    try:
        for n in range(10):
            url = f"{decided.api_url}/v1/recommendations/{customer}?session_id=won-{n}&k=5"
            status, body = call("GET", url)
            assert status == 200, body
            assert body["experiment"] is None and body["strategy"] == "popular"
            assert [i["product_id"] for i in body["items"]] == trending[:5]
            assert body["model"]["model"] == "popularity"
    finally:
        manager.down()


def test_a_live_sessions_purchase_intent_is_predicted_and_explained(
    api: str, settings: Settings
) -> None:
    snapshot = load_snapshot(settings.lake)
    assert snapshot.intent_model is not None  # the world trained one
    viewed, carted = list(snapshot.products)[:2]
    customer = min(snapshot.orders)  # a customer who ordered before
    session = f"intent-{uuid.uuid4().hex[:8]}"
    cart = {**event(session, carted, customer), "event_type": "add_to_cart", "quantity": 1}
    for sent in (event(session, viewed, customer), cart):
        status, ack = call("POST", f"{api}/v1/events", orjson.dumps(sent))
        assert status == 202 and ack["applied_online"], ack

    url = (
        f"{api}/v1/sessions/{session}/intent?customer_id={customer}&explain=true&device=mobile_web"
    )
    status, body = call("GET", url)
    assert status == 200, body
    features = body["features"]
    assert features["viewed"] == 1 and features["carted"] == 1
    assert features["known_customer"] == 1 and features["mobile_web"] == 1
    categories = {snapshot.products[p].category for p in (viewed, carted)}
    assert features["categories"] == len(categories) and features["category_focus"] == 1.0
    # the customer's orders, from the snapshot
    orders, last = snapshot.orders[customer]
    assert features["past_orders"] == orders > 0
    assert features["days_since_order"] == (dt.datetime.now(dt.UTC).date() - last).days
    assert 0 < body["probability"] < 1
    assert body["model_version"] == snapshot.manifest["intent_model"]["version"]
    assert body["likely_to_buy"] == (body["probability"] >= body["threshold"])
    explanation = body["explanation"]
    assert {e["feature"] for e in explanation} == set(FEATURES)
    logit = body["base_value"] + sum(e["shap"] for e in explanation)
    assert abs(1 / (1 + math.exp(-logit)) - body["probability"]) < 1e-3
    assert abs(explanation[0]["shap"]) >= abs(explanation[-1]["shap"])  # largest first

    status, plain = call("GET", f"{api}/v1/sessions/{session}/intent")
    assert status == 200 and "explanation" not in plain and plain["features"]["known_customer"] == 0
    status, missing = call("GET", f"{api}/v1/sessions/nobody-{uuid.uuid4().hex[:6]}/intent")
    assert status == 404 and missing["error"]["field"] == "session_id"
    status, bad = call("GET", f"{api}/v1/sessions/{session}/intent?customer_id=0")
    assert status == 422 and "customer_id" in str(bad)
