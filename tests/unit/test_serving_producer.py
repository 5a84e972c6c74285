"""The API's Kafka producers after a fatal error. librdkafka ends a producer the broker fenced
(every later send fails), so the API swaps in a new one and sends the event again. A broker
cannot be made to fence a producer on demand, so small stand-ins play the producers here; the
integration tests send through the real broker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import REGISTRY

from lakehouse.core.settings import Settings
from serving.api import BrokerUnavailable, Serving


class Delivered:
    def partition(self) -> int:
        return 3

    def offset(self) -> int:
        return 41


class Producer:
    """Answers each send with `error` (None: acknowledged at partition 3, offset 41)."""

    def __init__(self, error: KafkaError | None = None, raises: bool = False) -> None:
        self.error, self.raises, self.sent = error, raises, []

    def produce(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> None:
        if self.raises:
            raise KafkaException(self.error)
        self.sent.append(value)
        kw["on_delivery"](self.error, None if self.error else Delivered())

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


FENCED = KafkaError(KafkaError.PRODUCER_FENCED, "fenced by the broker")


@pytest.fixture
def serving(tmp_path: Path) -> Serving:
    return Serving(Settings(data_root=tmp_path, kafka_bootstrap_servers="127.0.0.1:9"))


def _with_producers(serving: Serving, *producers: Producer) -> list[Producer]:
    queue = list(producers)
    serving.producer = queue.pop(0)
    serving._producer = lambda linger_ms: queue.pop(0)  # type: ignore[method-assign]
    return list(producers)


@pytest.mark.parametrize("raises", [False, True], ids=["in the delivery report", "on send"])
def test_a_fenced_producer_is_replaced_and_the_event_sent_on_the_new_one(
    serving: Serving, raises: bool
) -> None:
    fenced, fresh = _with_producers(serving, Producer(FENCED, raises), Producer())
    assert asyncio.run(serving.produce({"session_id": "s"}, b"event")) == (3, 41)
    assert serving.producer is fresh and fresh.sent == [b"event"]
    assert fenced.sent == ([] if raises else [b"event"])


def test_an_event_purged_from_the_queue_of_a_producer_that_ended_is_sent_on_a_new_one(
    serving: Serving,
) -> None:
    # librdkafka fails the messages still queued on a producer that hit a fatal error with
    # _PURGE_QUEUE, not with the fatal error: they were never sent, so they are sent again
    purged = Producer(KafkaError(KafkaError._PURGE_QUEUE, "Local: Purged in queue"))
    _, fresh = _with_producers(serving, purged, Producer())
    assert asyncio.run(serving.produce({"session_id": "s"}, b"event")) == (3, 41)
    assert serving.producer is fresh and fresh.sent == [b"event"]


def test_an_error_that_is_not_fatal_answers_unavailable_and_keeps_the_producer(
    serving: Serving,
) -> None:
    timed_out = Producer(KafkaError(KafkaError._MSG_TIMED_OUT, "timed out"))
    _with_producers(serving, timed_out, Producer())
    with pytest.raises(BrokerUnavailable, match="timed out") as refused:
        asyncio.run(serving.produce({"session_id": "s"}, b"event"))
    assert refused.value.cause == "_MSG_TIMED_OUT"
    assert serving.producer is timed_out


def test_a_second_fenced_producer_answers_unavailable(serving: Serving) -> None:
    _with_producers(serving, Producer(FENCED), Producer(FENCED))
    with pytest.raises(BrokerUnavailable, match="fenced"):
        asyncio.run(serving.produce({"session_id": "s"}, b"event"))


def test_a_fenced_impressions_producer_is_replaced_and_the_loss_counted(serving: Serving) -> None:
    fenced, fresh = Producer(FENCED), Producer()
    serving.impressions = fenced
    serving._producer = lambda linger_ms: fresh  # type: ignore[method-assign]
    before = _counted("api_impressions_lost_total", cause="broker")
    serving.record_impression({"event_type": "recommendation_impression"})
    assert serving.impressions is fresh
    assert _counted("api_impressions_lost_total", cause="broker") == before + 1
    assert _counted("api_kafka_producers_replaced_total", use="impressions") >= 1
    serving.record_impression({"event_type": "recommendation_impression"})
    assert len(fresh.sent) == 1


class Queueing(Producer):
    """Holds sends until polled or flushed, then answers every one with `error`."""

    def __init__(self, error: KafkaError) -> None:
        super().__init__(error)
        self.waiting: list = []
        self.flushed = False

    def produce(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> None:
        self.sent.append(value)
        self.waiting.append(kw["on_delivery"])

    def poll(self, timeout: float) -> int:
        answered, self.waiting = self.waiting, []
        for callback in answered:
            callback(self.error, None)
        return len(answered)

    def flush(self, timeout: float) -> int:
        self.flushed = True
        return self.poll(timeout)


def test_impressions_still_queued_on_a_fenced_producer_are_counted_lost(serving: Serving) -> None:
    fenced, fresh = Queueing(FENCED), Producer()
    serving.impressions = fenced
    serving._producer = lambda linger_ms: fresh  # type: ignore[method-assign]
    before = _counted("api_impressions_lost_total", cause="broker")
    for _ in range(3):
        serving.record_impression({"event_type": "recommendation_impression"})
    answer = fenced.waiting.pop(0)
    answer(FENCED, None)  # the poller hears the first one fenced: the other two wait on it
    assert serving.impressions is fresh
    deadline = time.monotonic() + 5  # flushed aside, on a thread of its own
    while _counted("api_impressions_lost_total", cause="broker") < before + 3:
        assert time.monotonic() < deadline, "the fenced producer's queue was not flushed"
        time.sleep(0.01)
    assert fenced.flushed and not fenced.waiting


def _counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
