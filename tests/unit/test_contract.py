"""The hand-written validator agrees with the JSON Schema on good and broken events."""

from __future__ import annotations

import itertools

import jsonschema
import orjson
import pytest

from generator.events import event_records
from generator.simulate import Simulation
from generator.world import PRESETS, build_world
from streaming.contract import json_schema, validate_event
from streaming.producer import FaultInjector, Faults


@pytest.fixture(scope="module")
def sample_events() -> list[dict]:
    world = build_world(PRESETS["tiny"])
    batches = itertools.islice(Simulation(world).days(3), 3)
    return [record for batch in batches for record in event_records(world, batch)]


def _schema_ok(validator: jsonschema.Validator, event: object) -> bool:
    return not list(validator.iter_errors(event))


def test_generated_events_satisfy_the_schema_and_the_validator(sample_events) -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    for event in sample_events:
        assert validate_event(event) is None, event
        assert _schema_ok(validator, event), event
    assert {e["event_type"] for e in sample_events} == {
        "page_view",
        "product_view",
        "search",
        "add_to_cart",
        "remove_from_cart",
        "purchase",
    }


BROKEN = [
    ("missing event_id", lambda e: e.pop("event_id")),
    ("bad uuid", lambda e: e.update(event_id="nope")),
    ("local time", lambda e: e.update(event_time="2025-09-01 10:00:00")),
    ("unknown type", lambda e: e.update(event_type="wishlist_add")),
    ("unknown device", lambda e: e.update(device="fridge")),
    ("string customer", lambda e: e.update(customer_id="42")),
    ("bool customer", lambda e: e.update(customer_id=True)),
    ("zero product", lambda e: e.update(product_id=0)),
    ("negative price", lambda e: e.update(price=-1.0)),
    ("version 2", lambda e: e.update(schema_version="2.0")),
    ("list city", lambda e: e.update(city=["Lahore"])),
    ("purchase without order", lambda e: e.update(event_type="purchase", order_id=None)),
    ("search without query", lambda e: e.update(event_type="search", search_query=None)),
]


@pytest.mark.parametrize(("name", "breaks"), BROKEN, ids=[b[0] for b in BROKEN])
def test_validator_rejects_what_the_schema_rejects(sample_events, name, breaks) -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    event = dict(next(e for e in sample_events if e["event_type"] == "product_view"))
    breaks(event)
    assert validate_event(event) is not None
    assert not _schema_ok(validator, event)


def test_new_minor_version_with_extra_field_is_accepted(sample_events) -> None:
    event = {**sample_events[0], "schema_version": "1.1", "app_version": "5.2.1"}
    assert validate_event(event) is None
    assert _schema_ok(jsonschema.Draft202012Validator(json_schema()), event)


def test_every_injected_malformed_message_is_rejected(sample_events) -> None:
    injector = FaultInjector(Faults(malformed=0.5))
    stream = ((b"k", e, 0) for e in sample_events[:400])
    malformed = [(v, k) for _, v, k, _ in injector.messages(stream) if k.startswith("malformed")]
    assert {k for _, k in malformed} == {
        "malformed_bad_json",
        "malformed_missing_field",
        "malformed_wrong_type",
        "malformed_unknown_event_type",
        "malformed_undecodable",
    }
    for value, kind in malformed:
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            assert kind in ("malformed_bad_json", "malformed_undecodable")
            continue
        assert validate_event(event) is not None, kind


def _impression() -> dict:
    return {
        "event_id": "0b6f4c1e-2b1a-4a53-9d0e-6f1f0d1f2a3b",
        "event_time": "2026-12-01T10:00:00.123Z",
        "event_type": "recommendation_impression",
        "session_id": "s-1",
        "customer_id": 42,
        "request_id": "5f2c0c8e3d0b4f7c9a1e2b3c4d5e6f70",
        "experiment": "ranker_vs_popularity",
        "variant": "champion",
        "model_version": "20261201T000000Z/hybrid",
        "recommended_product_ids": [7, 3, 9],
        "schema_version": "1.1",
    }


def _click() -> dict:
    return {
        **_impression(),
        "event_id": "1b6f4c1e-2b1a-4a53-9d0e-6f1f0d1f2a3b",
        "event_type": "recommendation_click",
        "recommended_product_ids": None,
        "product_id": 3,
        "position": 2,
        "device": "mobile_web",
    }


def test_recommendation_events_satisfy_the_schema_and_the_validator() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    no_experiment = {**_impression(), "experiment": None, "variant": None}
    for event in (_impression(), _click(), no_experiment):
        assert validate_event(event) is None, event
        assert _schema_ok(validator, event), event


RECOMMENDATION_BROKEN = [
    ("impression without request", _impression, lambda e: e.pop("request_id")),
    ("impression without products", _impression, lambda e: e.pop("recommended_product_ids")),
    ("empty product list", _impression, lambda e: e.update(recommended_product_ids=[])),
    ("string in product list", _impression, lambda e: e.update(recommended_product_ids=[1, "2"])),
    ("101 products", _impression, lambda e: e.update(recommended_product_ids=[1] * 101)),
    ("variant without experiment", _impression, lambda e: e.update(experiment=None)),
    ("experiment upper case", _impression, lambda e: e.update(experiment="AB")),
    ("request id with space", _impression, lambda e: e.update(request_id="a b")),
    ("click without position", _click, lambda e: e.pop("position")),
    ("click without product", _click, lambda e: e.pop("product_id")),
    ("click without device", _click, lambda e: e.pop("device")),
    ("position zero", _click, lambda e: e.update(position=0)),
    ("position 101", _click, lambda e: e.update(position=101)),
]


@pytest.mark.parametrize(
    ("name", "event", "breaks"), RECOMMENDATION_BROKEN, ids=[b[0] for b in RECOMMENDATION_BROKEN]
)
def test_validator_rejects_broken_recommendation_events(name, event, breaks) -> None:
    broken = event()
    breaks(broken)
    assert validate_event(broken) is not None
    assert not _schema_ok(jsonschema.Draft202012Validator(json_schema()), broken)
