"""The clickstream event contract (schemas/clickstream_event.v1.json) and a fast validator.

The JSON Schema is the documentation and the reference; `validate_event` implements the same rules
by hand because it runs on every consumed message (jsonschema is ~50x slower). A test checks the
two agree on valid and broken events.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).parent / "schemas" / "clickstream_event.v1.json"
CONTRACT_MAJOR = 1
SCHEMA_VERSION = "1.1"
# what a shopper does, and what the recommendation API showed (1.1): silver keeps them apart
SHOPPER_EVENTS = (
    "page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "purchase"
)  # fmt: skip
IMPRESSION = "recommendation_impression"
CLICK = "recommendation_click"
RECOMMENDATION_EVENTS = (IMPRESSION, CLICK)
EVENT_TYPES = SHOPPER_EVENTS + RECOMMENDATION_EVENTS
MAX_POSITION = 100  # a recommendation list holds at most this many products
DEVICES = ("mobile_app_android", "mobile_app_ios", "mobile_web", "desktop_web")
PRODUCT_EVENTS = frozenset(
    {"product_view", "add_to_cart", "remove_from_cart", "purchase", "recommendation_click"}
)
# `device` is required of every event but an impression: the API that emits one may not know it
REQUIRED = ("event_id", "event_time", "event_type", "session_id", "schema_version")

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
_VERSION = re.compile(r"^1\.\d+$")
_TOKEN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
_TYPES = frozenset(EVENT_TYPES)
_DEVICES = frozenset(DEVICES)
MAX_ID = 2**63 - 1  # ids are stored as 64-bit integers downstream


@cache
def json_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_event(event: Any) -> str | None:
    """None when the event satisfies the contract, else the first reason it does not."""
    if not isinstance(event, dict):
        return f"not a JSON object: {type(event).__name__}"
    for name in REQUIRED:
        if name not in event or event[name] is None:
            return f"missing required field: {name}"
    version = event["schema_version"]
    if not isinstance(version, str) or not _VERSION.match(version):
        return f"unsupported schema_version: {version!r}"
    event_type = event["event_type"]
    if event_type not in _TYPES:
        return f"unknown event_type: {event_type!r}"
    if not isinstance(event["event_id"], str) or not _UUID.match(event["event_id"]):
        return f"event_id is not a UUID: {event['event_id']!r}"
    if not isinstance(event["event_time"], str) or not _TIME.match(event["event_time"]):
        return f"event_time is not ISO 8601 UTC: {event['event_time']!r}"
    try:
        dt.datetime.fromisoformat(event["event_time"])
    except ValueError:
        return f"event_time is not a valid date and time: {event['event_time']!r}"
    session = event["session_id"]
    if not isinstance(session, str) or not 1 <= len(session) <= 64:
        return "session_id must be a string of 1-64 characters"
    device = event.get("device")
    if device is None and event_type != IMPRESSION:
        return "missing required field: device"
    if device is not None and device not in _DEVICES:
        return f"unknown device: {device!r}"
    for name in ("customer_id", "product_id", "order_id"):
        value = event.get(name)
        if value is not None and (not _int(value) or not 1 <= value <= MAX_ID):
            return f"{name} must be a positive 64-bit integer, got {value!r}"
    quantity = event.get("quantity")
    if quantity is not None and (not _int(quantity) or quantity < 1):
        return f"quantity must be a positive integer, got {quantity!r}"
    price = event.get("price")
    if price is not None and (not _number(price) or price < 0):
        return f"price must be a non-negative number, got {price!r}"
    for name in ("category_path", "brand", "city"):
        value = event.get(name)
        if value is not None and not isinstance(value, str):
            return f"{name} must be a string, got {type(value).__name__}"
    query = event.get("search_query")
    if query is not None and (not isinstance(query, str) or len(query) > 500):
        return "search_query must be a string of at most 500 characters"
    if event_type in PRODUCT_EVENTS and event.get("product_id") is None:
        return f"{event_type} without product_id"
    if event_type == "purchase":
        for name in ("order_id", "customer_id", "price", "quantity"):
            if event.get(name) is None:
                return f"purchase without {name}"
    if event_type == "search" and event.get("search_query") is None:
        return "search without search_query"
    return _recommendation_reason(event, event_type)


def _recommendation_reason(event: dict[str, Any], event_type: str) -> str | None:
    """The rules of the 1.1 fields: what the API showed (an impression) and what was clicked."""
    request = event.get("request_id")
    if request is not None and (not isinstance(request, str) or not _TOKEN.match(request)):
        return "request_id must be 1-64 letters, digits or _.:-"
    for name in ("experiment", "variant"):
        value = event.get(name)
        if value is not None and (not isinstance(value, str) or not _NAME.match(value)):
            return f"{name} must be a lower-case name (a-z, 0-9, _), got {value!r}"
    model = event.get("model_version")
    if model is not None and (not isinstance(model, str) or not 1 <= len(model) <= 128):
        return "model_version must be a string of 1-128 characters"
    products = event.get("recommended_product_ids")
    if products is not None and (
        not isinstance(products, list)
        or not 1 <= len(products) <= MAX_POSITION
        or not all(_int(p) and 1 <= p <= MAX_ID for p in products)
    ):
        return f"recommended_product_ids must be 1-{MAX_POSITION} positive 64-bit integers"
    position = event.get("position")
    if position is not None and (not _int(position) or not 1 <= position <= MAX_POSITION):
        return f"position must be an integer in 1-{MAX_POSITION}, got {position!r}"
    if event_type == IMPRESSION:
        for name in ("request_id", "recommended_product_ids"):
            if event.get(name) is None:
                return f"{IMPRESSION} without {name}"
    if event_type == CLICK:
        for name in ("request_id", "position"):
            if event.get(name) is None:
                return f"{CLICK} without {name}"
    if (event.get("experiment") is None) != (event.get("variant") is None):
        return "experiment and variant come together"
    return None
