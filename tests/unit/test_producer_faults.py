"""The producer's extra-copy faults: orphans, future-dated events and negative quantities."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections import Counter
from pathlib import Path

import orjson
import pytest

from generator.events import simulated_messages
from generator.world import PRESETS
from streaming.contract import PRODUCT_EVENTS, validate_event
from streaming.producer import ORPHAN_ID_BASE, FaultInjector, Faults
from tests.conftest import isolated_env, run_cli

NEW_KINDS = {"orphan_product", "orphan_customer", "future_time", "negative_quantity"}
GOOD_KINDS = {"valid", "late", "duplicate", "drift"}
NEW_KNOBS = {"orphans": 0.2, "future": 0.2, "negative_quantities": 0.4}
OTHER_KNOBS = {"duplicates": 0.1, "late": 0.1, "malformed": 0.1, "drift": 0.1}
EVENT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")  # as generator.events
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def stream() -> list[tuple[bytes, dict, int]]:
    """The first 6,000 events of the tiny world, all six event types."""
    return list(itertools.islice(simulated_messages(PRESETS["tiny"]), 6_000))


def _messages(stream, **knobs) -> list:
    return list(FaultInjector(Faults(**knobs)).messages(iter(stream)))


def _with_send_times(stream, **knobs) -> list:
    """(message, the injector's clock when it was yielded = the Kafka timestamp it gets)."""
    injector = FaultInjector(Faults(**knobs))
    return [(m, injector.now_ms) for m in injector.messages(iter(stream))]


def _ms(event_time: str) -> int:
    return round(dt.datetime.fromisoformat(event_time).timestamp() * 1000)


def test_every_new_kind_is_produced_and_counted(stream) -> None:
    kinds = Counter(kind for _, _, kind, _ in _messages(stream, **NEW_KNOBS))
    assert kinds["valid"] == len(stream)
    assert set(kinds) == NEW_KINDS | {"valid"}


def test_extra_copies_change_only_their_field_under_a_fresh_id(stream) -> None:
    messages = _messages(stream, **NEW_KNOBS)
    keys = {record["event_id"]: key for key, record, _ in stream}
    extra_ids = set()
    source = None
    for key, value, kind, event_id in messages:
        event = orjson.loads(value)  # every extra message is JSON
        if kind == "valid":
            source = event
            continue
        assert kind in NEW_KINDS
        assert key == keys[source["event_id"]]  # keyed like its source, same partition
        assert event["event_id"] == event_id
        assert event_id not in keys and event_id not in extra_ids
        extra_ids.add(event_id)
        changed = {
            "orphan_product": "product_id",
            "orphan_customer": "customer_id",
            "future_time": "event_time",
            "negative_quantity": "quantity",
        }[kind]
        # Apart from the id and the corrupted field, the copy is the event it follows.
        assert {k: v for k, v in event.items() if k not in ("event_id", changed)} == {
            k: v for k, v in source.items() if k not in ("event_id", changed)
        }
        if kind == "orphan_product":
            assert event["event_type"] in PRODUCT_EVENTS
            assert event["product_id"] >= ORPHAN_ID_BASE
        elif kind == "orphan_customer":
            assert event.get("product_id") is None
            assert event["customer_id"] >= ORPHAN_ID_BASE
        elif kind == "future_time":
            assert EVENT_TIME.match(event["event_time"]), event["event_time"]
            assert _ms(event["event_time"]) - _ms(source["event_time"]) >= DAY_MS
        else:
            assert event["event_type"] in ("add_to_cart", "purchase")
            assert -5 <= event["quantity"] < 0


def test_future_time_is_formatted_like_the_generator(stream) -> None:
    sent = _with_send_times(stream, future=0.5)
    future = [(m[1], at) for m, at in sent if m[2] == "future_time"]
    assert future
    for value, sent_ms in future:
        event_time = orjson.loads(value)["event_time"]
        assert EVENT_TIME.match(event_time)
        assert DAY_MS <= _ms(event_time) - sent_ms <= 30 * DAY_MS


def test_send_time_is_the_stream_clock_and_late_events_are_sent_late(stream) -> None:
    sent = _with_send_times(stream, late=0.3, duplicates=0.1)
    times = [at for _, at in sent]
    assert times == sorted(times)  # the clock never runs backwards
    lateness: dict[str, list[int]] = {"valid": [], "late": []}
    for (_, value, kind, _), at in sent:
        if kind in lateness:
            lateness[kind].append(at - _ms(orjson.loads(value)["event_time"]))
    assert all(0 <= x <= 1 for x in lateness["valid"])  # sent when they happen
    assert max(lateness["late"]) > 6 * 3_600_000  # some held back for hours
    assert all(x >= 0 for x in lateness["late"])


def test_events_without_master_data_or_quantity_get_no_copy(stream) -> None:
    anonymous = [
        item
        for item in stream
        if item[1]["customer_id"] is None and item[1]["event_type"] not in PRODUCT_EVENTS
    ][:200]
    no_quantity = [
        item for item in stream if item[1]["event_type"] not in ("add_to_cart", "purchase")
    ][:200]
    assert anonymous and no_quantity
    assert {k for _, _, k, _ in _messages(anonymous, orphans=0.5)} == {"valid"}
    assert {k for _, _, k, _ in _messages(no_quantity, negative_quantities=0.5)} == {"valid"}


def test_good_and_other_fault_messages_are_unchanged_by_the_new_knobs(stream) -> None:
    without = _messages(stream, **OTHER_KNOBS)
    with_new = _messages(stream, **OTHER_KNOBS, **NEW_KNOBS)
    assert {k for _, _, k, _ in without} >= GOOD_KINDS
    good = [m for m in with_new if m[2] in GOOD_KINDS]
    assert good == [m for m in without if m[2] in GOOD_KINDS]
    # Malformed messages too: every message but the new kinds is byte for byte the same.
    assert [m for m in with_new if m[2] not in NEW_KINDS] == without


def test_new_knobs_are_deterministic_by_seed(stream) -> None:
    first = _messages(stream, **OTHER_KNOBS, **NEW_KNOBS, seed=3)
    assert first == _messages(stream, **OTHER_KNOBS, **NEW_KNOBS, seed=3)
    other = _messages(stream, **OTHER_KNOBS, **NEW_KNOBS, seed=4)
    extras = [m for m in first if m[2] in NEW_KINDS]
    assert extras != [m for m in other if m[2] in NEW_KINDS]


def test_contract_rejects_negative_quantities_and_accepts_orphans_and_future(stream) -> None:
    verdicts: dict[str, set[bool]] = {}
    for _, value, kind, _ in _messages(stream, **NEW_KNOBS):
        if kind in NEW_KINDS:
            verdicts.setdefault(kind, set()).add(validate_event(orjson.loads(value)) is None)
    assert verdicts == {
        "orphan_product": {True},
        "orphan_customer": {True},
        "future_time": {True},
        "negative_quantity": {False},
    }


@pytest.mark.parametrize("name", ["orphans", "future", "negative_quantities"])
@pytest.mark.parametrize("value", [-0.1, 0.9])
def test_faults_reject_shares_outside_0_to_half(name: str, value: float) -> None:
    option = "--" + name.replace("_", "-")
    with pytest.raises(ValueError, match=f"^{option} must be a share between 0 and 0.5"):
        Faults(**{name: value})


@pytest.mark.parametrize(
    "args",
    [["--orphans", "0.9"], ["--future", "0.6"], ["--negative-quantities", "-0.1"]],
)
def test_cli_rejects_a_bad_share_with_exit_2_before_contacting_kafka(
    tmp_path: Path, args: list[str]
) -> None:
    # No services: isolated_env points Kafka at a free (closed) port, so a 2 proves the options
    # were validated before the broker was contacted (a broker error would exit 1).
    result = run_cli("produce", "--preset", "tiny", *args, env=isolated_env(tmp_path), check=False)
    assert result.returncode == 2, result.stderr
    assert f"{args[0]} must be a share between 0 and 0.5" in " ".join(result.stderr.split())
