"""The recommendation API (FastAPI on granian or uvicorn; `lakehouse serve`).

Scoring runs in the API process on the serving snapshot held in memory; the online store
(Redis) gives the live session in one pipelined round trip. When Redis is slow or down the
answer comes from the snapshot alone, marked `degraded`; it is never a 500. `POST /v1/events`
produces the event to Kafka (acknowledged before it answers) and applies it to the online store
itself, so the next recommendation sees it; the stream processor skips it later by its id.
While an A/B experiment runs (ml/experiments.py), each session or customer is served its
variant; `GET /v1/sessions/{id}/intent` scores a live session's purchase intent (ml/intent.py).
Every answered recommendation request is also produced to Kafka as a `recommendation_impression`
(without waiting: a lost one is counted, never fails the request), so the lakehouse can join what
was shown to what was clicked and bought.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import redis
import redis.asyncio as aioredis
from confluent_kafka import KafkaError, KafkaException, Producer
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from lakehouse.core.kafka import EVENTS_TOPIC_PARTITIONS, client_config, ensure_topic
from lakehouse.core.settings import Settings, load_settings
from ml.experiments import assignment, load_experiments
from ml.intent import live_features, predict_intent
from serving.recommend import (
    Activity,
    popular_products,
    products_bought_together,
    recommend,
    similar_products,
)
from serving.snapshot import Snapshot, SnapshotMissing, current_version, load_snapshot
from streaming.contract import (
    DEVICES,
    IMPRESSION,
    MAX_ID,
    RECOMMENDATION_EVENTS,
    SCHEMA_VERSION,
    validate_event,
)
from streaming.online import (
    OnlineStore,
    SessionTimes,
    Ttls,
    activity_keys,
    apply_args,
    apply_script,
    parse_activity,
    parse_session_times,
    read_script,
    session_times_commands,
)

MAX_BODY_BYTES = 64 * 1024
ACTIVITY_LIMIT = 20  # newest products per activity set a request reads
LIVE_INTERVAL_SECONDS = 2.0
LIVE_STREAM_SECONDS = 600.0
STOREFRONT = Path(__file__).parent / "static" / "storefront.html"
log = logging.getLogger(__name__)
IMPRESSION_LINGER_MS = 500  # how long an impression may wait for others to share its request
EVENT_LINGER_MS = 1  # a posted event waits for its acknowledgement
# each use of a producer: the Serving attribute holding it and its linger
PRODUCER_USES = {
    "events": ("producer", EVENT_LINGER_MS),
    "impressions": ("impressions", IMPRESSION_LINGER_MS),
}

Id = Annotated[int, PathParam(ge=1, le=MAX_ID, description="A positive 64-bit id.")]
K = Annotated[int, Query(ge=1, le=100, description="How many items (1-100).")]
SessionId = Annotated[
    str | None, Query(min_length=1, max_length=64, description="The live session.")
]
ContextProduct = Annotated[
    int | None, Query(ge=1, le=MAX_ID, description="The product on screen, if any.")
]
Device = Annotated[
    Literal[DEVICES] | None,  # type: ignore[valid-type]
    Query(description="The shopper's device (recorded with impressions; an intent feature)."),
]

LATENCY = Histogram(
    "api_request_seconds",
    "Request latency by endpoint",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
FALLBACKS = Counter("api_degraded_total", "Answers from the snapshot alone, by cause", ["cause"])
EXPOSURES = Counter(
    "api_experiment_answers_total", "Answers per experiment and variant", ["experiment", "variant"]
)
IMPRESSIONS_LOST = Counter(
    "api_impressions_lost_total", "Impressions the broker did not take, by cause", ["cause"]
)
EVENTS_REFUSED = Counter(
    "api_events_refused_total",
    "Events answered 503: the broker did not take them, by cause",
    ["cause"],
)
PRODUCERS_REPLACED = Counter(
    "api_kafka_producers_replaced_total",
    "Kafka producers replaced after a fatal error (the broker fenced them), by use",
    ["use"],
)
SNAPSHOT_CREATED = Gauge(
    "api_snapshot_created_seconds",
    "When the serving snapshot in use was published (epoch seconds)",
    multiprocess_mode="max",
)


class Serving:
    """What the API holds: settings, the snapshot in use, the online store, a Kafka producer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lake = settings.lake
        self.snapshot: Snapshot | None = None
        self.snapshot_error = "not loaded yet"
        # a bad spec stops the API at start, naming the file and the field
        folder = Path(settings.experiments_dir)
        self.experiments = load_experiments(folder) if folder.is_dir() else []
        self.redis = aioredis.Redis.from_url(
            settings.online_store_url,
            socket_timeout=settings.api_deadline_ms / 1000 * 4,
            socket_connect_timeout=1.0,
        )
        self.ttls = Ttls.of(settings)
        self.store = OnlineStore(settings.online_store_url, self.ttls, timeout=1.0)
        self.apply = apply_script(self.redis)
        self.read = read_script(self.redis)
        self.producer = self._producer(linger_ms=EVENT_LINGER_MS)
        # impressions are not waited for: batched, one produce request carries many (on the
        # embedded broker's object storage each partition of a request is a write; 1 ms left
        # the API at ~730/s, 100 ms over six partitions kept the broker at ~40 % of a core)
        self.impressions = self._producer(linger_ms=IMPRESSION_LINGER_MS)
        self._replacing = threading.Lock()  # the poller and the event loop both replace
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_producer, daemon=True)

    def _producer(self, linger_ms: int) -> Producer:
        return Producer(
            client_config(
                self.settings.kafka_bootstrap_servers,
                **{
                    "enable.idempotence": True,
                    "linger.ms": linger_ms,
                    # unkeyed messages (impressions) stay on one partition for a whole batch
                    "sticky.partitioning.linger.ms": linger_ms,
                    "message.timeout.ms": int(self.settings.api_produce_timeout_seconds * 1000),
                },
            )
        )

    def _poll_producer(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)
            self.impressions.poll(0)

    def live_view(self, minutes: int) -> tuple[list, list, dict]:
        """Per-minute counters, newest orders, processor counters (blocking: run in a thread)."""
        return self.store.minutes(last=minutes), self.store.orders(20), self.store.stats()

    async def refresh_snapshot(self) -> bool:
        """Load the current snapshot if it is newer than the one in use; True if swapped."""
        try:
            version = await asyncio.to_thread(current_version, self.lake)
            if version is None:
                raise SnapshotMissing("no serving snapshot has been published yet")
            if self.snapshot is not None and version == self.snapshot.version:
                return False
            loaded = await asyncio.to_thread(load_snapshot, self.lake, version)
        except (SnapshotMissing, OSError) as exc:
            self.snapshot_error = str(exc)
            return False
        self.snapshot = loaded  # one reference swap: a request uses the old or the new one
        SNAPSHOT_CREATED.set(loaded.created_at.timestamp())
        return True

    async def _watch_snapshots(self) -> None:
        while True:
            await asyncio.sleep(self.settings.api_snapshot_poll_seconds)
            await self.refresh_snapshot()

    async def ensure_events_topic(self) -> None:
        """Create the events topic before the first event: a broker that creates it on the
        first produce may refuse sends racing that creation (tansu answered UNKNOWN to a few).
        A broker down at start is not fatal: events answer 503 until it is back."""
        topic = self.settings.events_topic
        try:
            await asyncio.to_thread(
                ensure_topic,
                self.settings.kafka_bootstrap_servers,
                topic,
                EVENTS_TOPIC_PARTITIONS,
                timeout=self.settings.api_produce_timeout_seconds,
            )
        except (KafkaException, TimeoutError) as exc:  # TimeoutError: the creation's future
            log.warning(
                "could not create the events topic %s at start (%s); events answer 503 until "
                "the broker accepts them",
                topic,
                str(exc) or type(exc).__name__,
            )

    @contextlib.asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        self._poller.start()
        await self.ensure_events_topic()
        await self.refresh_snapshot()
        watcher = asyncio.create_task(self._watch_snapshots())
        try:
            yield
        finally:
            watcher.cancel()
            self._stop.set()
            self.producer.flush(self.settings.api_produce_timeout_seconds)
            self.impressions.flush(self.settings.api_produce_timeout_seconds)
            await self.redis.aclose()
            self.store.close()

    # -- the online store, within the deadline -------------------------------------------------

    async def activity(
        self, session_id: str | None, customer_id: int | None
    ) -> tuple[Activity, Activity, str | None]:
        """(session activity, customer activity, why degraded or None)."""
        if session_id is None and customer_id is None:
            return Activity(), Activity(), None
        keys = activity_keys(session_id, customer_id)
        try:
            async with asyncio.timeout(self.settings.api_deadline_ms / 1000):
                reply = await self.read(keys=keys, args=[ACTIVITY_LIMIT])
        except TimeoutError:
            return Activity(), Activity(), "online store too slow"
        except aioredis.RedisError as exc:
            return Activity(), Activity(), f"online store unavailable ({type(exc).__name__})"
        found = parse_activity(keys, reply)

        def of(owner: str) -> Activity:
            kinds = found[owner]
            return Activity(views=kinds["view"], cart=kinds["cart"], bought=kinds["buy"])

        return of("session"), of("customer"), None

    async def session_times(self, session_id: str) -> SessionTimes:
        """The session's products with times (purchase intent), within the deadline."""
        async with asyncio.timeout(self.settings.api_deadline_ms / 1000):
            pipe = self.redis.pipeline(transaction=False)
            session_times_commands(pipe, session_id)
            return parse_session_times(await pipe.execute())

    # -- events --------------------------------------------------------------------------------

    async def produce(self, event: dict[str, Any], value: bytes) -> tuple[int, int]:
        """Send to Kafka and wait for the acknowledgement: (partition, offset). A producer the
        broker fenced is replaced and the event sent once more on the new one (the fenced
        producer's write was refused, so nothing is stored twice)."""
        key = str(event.get("session_id", "")).encode()
        producer = self.producer
        result = await self._acknowledged(producer, value, key)
        if isinstance(result, KafkaError) and producer_ended(result):
            self._replace_ended("events", producer)
            result = await self._acknowledged(self.producer, value, key)
        if isinstance(result, KafkaError):
            raise BrokerUnavailable(result.name(), result.str())
        return result

    async def _acknowledged(
        self, producer: Producer, value: bytes, key: bytes
    ) -> tuple[int, int] | KafkaError:
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def delivered(error: KafkaError | None, message: Any) -> None:
            result = error or (message.partition(), message.offset())
            loop.call_soon_threadsafe(
                lambda: done.done() or done.set_result(result)  # type: ignore[func-returns-value]
            )

        try:
            producer.produce(self.settings.events_topic, value, key, on_delivery=delivered)
        except KafkaException as exc:  # a fatal error is raised here once it has happened
            return exc.args[0]
        async with asyncio.timeout(self.settings.api_produce_timeout_seconds + 1):
            return await done

    def _replace_ended(self, use: str, producer: Producer) -> None:
        """A fatal error ends a librdkafka producer for good (every later send fails): swap in
        a new one for `use` ("events" or "impressions"), once however many sends saw the
        error. The poller serves the new one; the old one is flushed aside, so each message
        still queued on it gets its error (events are retried, impressions counted lost)."""
        attribute, linger_ms = PRODUCER_USES[use]
        with self._replacing:
            if producer is not getattr(self, attribute):
                return  # another send replaced it already
            setattr(self, attribute, self._producer(linger_ms=linger_ms))
        PRODUCERS_REPLACED.labels(use).inc()
        timeout = self.settings.api_produce_timeout_seconds
        threading.Thread(target=producer.flush, args=(timeout,), daemon=True).start()

    def record_impression(self, event: dict[str, Any]) -> None:
        """Produce an impression without waiting for the broker; one it refuses is counted."""

        def delivered(error: KafkaError | None, _: Any) -> None:
            if error is None:
                return
            IMPRESSIONS_LOST.labels("broker").inc()
            if producer_ended(error):
                self._replace_ended("impressions", producer)

        # unkeyed: a batch goes to one partition, one write on the embedded broker's object
        # storage instead of one per partition (nothing reads impressions in session order)
        producer = self.impressions
        try:
            producer.produce(self.settings.events_topic, orjson.dumps(event), on_delivery=delivered)
        except BufferError:
            IMPRESSIONS_LOST.labels("producer queue full").inc()
        except KafkaException as exc:  # a fatal error is raised here once it has happened
            delivered(exc.args[0], None)


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge an event: `cause` is librdkafka's error name."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(f"{message} ({cause})")
        self.cause = cause


# errors after which a librdkafka producer never sends again (the broker fenced its producer
# id); delivery reports do not carry librdkafka's fatal flag, so the codes are named as well
PRODUCER_ENDED = {
    KafkaError._FATAL,
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    # librdkafka purges the messages still queued (never sent) when its producer hits a fatal
    # error; the API never purges, so this one is fatal too and the message safe to resend
    KafkaError._PURGE_QUEUE,
}


def producer_ended(error: KafkaError) -> bool:
    return error.fatal() or error.code() in PRODUCER_ENDED


class Timed:
    """Request latency per route into the histogram (plain ASGI: Starlette's
    BaseHTTPMiddleware cost about a fifth of a request's CPU)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(route).observe(time.perf_counter() - started)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    """orjson straight to bytes: FastAPI's own encoding of a returned dict cost a third of a
    request's CPU."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error(status: int, field: str, reason: str) -> Response:
    return _json({"error": {"field": field, "reason": reason}}, status)


def _item(snapshot: Snapshot, item: dict[str, Any]) -> dict[str, Any]:
    product = snapshot.products.get(item["product_id"])
    return {
        **item,
        "name": product.name if product else None,
        "brand": product.brand if product else None,
        "category": product.category if product else None,
        "price": product.price if product else None,
    }


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app; settings are read here, when a worker starts (not at import)."""
    serving = Serving(settings or load_settings())
    app = FastAPI(
        title="Retail Lakehouse recommendations",
        version="1",
        lifespan=serving.lifespan,
    )
    app.state.serving = serving

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"] if p not in ("path", "query", "body"))
        return _error(422, field, first["msg"])

    app.add_middleware(Timed)

    def snapshot_or_503() -> Snapshot | Response:
        if serving.snapshot is None:
            return _error(503, "snapshot", serving.snapshot_error)
        return serving.snapshot

    async def answer(
        customer_id: int | None,
        session_id: str | None,
        k: int,
        context_product_id: int | None,
        device: str | None,
    ) -> Any:
        started = time.perf_counter()
        snapshot = snapshot_or_503()
        if isinstance(snapshot, Response):
            return snapshot
        if context_product_id is not None and context_product_id not in snapshot.products:
            return _error(404, "context_product_id", "unknown or unsellable product")
        session, customer, degraded = await serving.activity(session_id, customer_id)
        if degraded:
            FALLBACKS.labels(degraded.split(" (")[0]).inc()
        city = snapshot.cities.get(customer_id) if customer_id is not None else None
        # the customer's own recent views and carts (other sessions since the nightly lists)
        # count like the session's, after it
        live = Activity(
            views=list(dict.fromkeys(session.views + customer.views))[:20],
            cart=list(dict.fromkeys(session.cart + customer.cart)),
            bought=session.bought,
        )
        assigned = None
        now = dt.datetime.now(dt.UTC)
        found = assignment(serving.experiments, now, session_id, customer_id)
        if found is not None and found[0].name in snapshot.decided_experiments:
            found = None  # concluded: everyone gets the policy
        if found is not None:
            recommender, share = found[1].recommender, found[1].session_share
        elif snapshot.policy is not None:  # the winner of a concluded experiment
            recommender, share = snapshot.policy["recommender"], snapshot.policy["session_share"]
        else:
            recommender, share = "champion", None  # None: the tuned session share
        model = snapshot.manifest["champion"]  # {"model": …, "model_version": …}
        if recommender == "popularity":
            items, strategy = popular_products(snapshot, live, k, city)
            model = {"model": "popularity", "model_version": None}
        else:
            if recommender == "batch_list":
                share = 0.0
            items, strategy = recommend(
                snapshot, customer_id, live, k, context_product_id, city, share
            )
        if found is not None:
            experiment, variant = found
            assigned = {"name": experiment.name, "variant": variant.name}
            EXPOSURES.labels(experiment.name, variant.name).inc()
        request_id = uuid.uuid4().hex
        if items:
            serving.record_impression(
                {
                    "event_id": str(uuid.uuid4()),
                    "event_time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "event_type": IMPRESSION,
                    # a request without a session is a session of its own
                    "session_id": session_id or request_id,
                    "customer_id": customer_id,
                    "device": device,
                    "request_id": request_id,
                    "experiment": assigned and assigned["name"],
                    "variant": assigned and assigned["variant"],
                    "model_version": model_version(snapshot.version, model),
                    "recommended_product_ids": [i["product_id"] for i in items],
                    "schema_version": SCHEMA_VERSION,
                }
            )
        return _json(
            {
                "customer_id": customer_id,
                "known_customer": customer_id is not None and snapshot.known_customer(customer_id),
                "session_id": session_id,
                "items": [_item(snapshot, i) for i in items],
                "strategy": strategy,
                "degraded": degraded is not None,
                "degraded_reason": degraded,
                "snapshot_version": snapshot.version,
                "model": model,
                "experiment": assigned,
                "request_id": request_id,
                "took_ms": round((time.perf_counter() - started) * 1000, 3),
            }
        )

    @app.get("/v1/recommendations/{customer_id}")
    async def recommendations(
        customer_id: Id,
        session_id: SessionId = None,
        k: K = 10,
        context_product_id: ContextProduct = None,
        device: Device = None,
    ) -> Any:
        """The customer's batch candidates re-ranked with the live session; unknown customers
        get the session's and the trending products. The answer's `request_id` is what a
        `recommendation_click` event names."""
        return await answer(customer_id, session_id, k, context_product_id, device)

    @app.get("/v1/sessions/{session_id}/intent")
    async def intent(
        session_id: Annotated[str, PathParam(min_length=1, max_length=64)],
        customer_id: Annotated[
            int | None, Query(ge=1, le=MAX_ID, description="The signed-in customer, if any.")
        ] = None,
        explain: Annotated[bool, Query(description="Add each feature's SHAP value.")] = False,
        device: Device = None,
    ) -> Any:
        """Will this live session end in a purchase: the probability from the purchase-intent
        model (docs/ml.md), and with `explain=1` each feature's TreeSHAP value (log-odds)."""
        started = time.perf_counter()
        snapshot = snapshot_or_503()
        if isinstance(snapshot, Response):
            return snapshot
        if snapshot.intent_model is None:
            return _error(
                503,
                "intent_model",
                "the snapshot has no purchase-intent model: train it (`lakehouse ml train "
                "--part intent`) and publish a snapshot",
            )
        try:
            times = await serving.session_times(session_id)
        except (TimeoutError, aioredis.RedisError) as exc:
            reason = "too slow" if isinstance(exc, TimeoutError) else type(exc).__name__
            return _error(503, "online_store", f"the online store is unavailable ({reason})")
        if times.empty:
            return _error(404, "session_id", "no product activity for this session")
        known = [p for p, _ in (*times.views, *times.cart) if p in snapshot.products]
        prices = {p: snapshot.products[p].price for p in known}
        past_orders, last_order = snapshot.orders.get(customer_id, (0, None))
        features = live_features(
            times.views,
            times.cart,
            times.start_ms,
            prices,
            customer_id is not None,
            categories={p: snapshot.products[p].category for p in known},
            device=device,
            past_orders=past_orders,
            last_order=last_order,
        )
        meta = snapshot.manifest["intent_model"]
        probability, contributions = predict_intent(snapshot.intent_model, features, explain)
        body: dict[str, Any] = {
            "session_id": session_id,
            "probability": round(probability, 4),
            "likely_to_buy": probability >= (meta.get("threshold") or 0.5),
            "threshold": meta.get("threshold"),
            "model_version": meta["version"],
            "features": features,
        }
        if contributions is not None:
            body["base_value"] = contributions.pop("bias")
            body["explanation"] = sorted(
                ({"feature": f, "value": features[f], "shap": v} for f, v in contributions.items()),
                key=lambda e: -abs(e["shap"]),
            )
        body["took_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return _json(body)

    @app.get("/v1/recommendations")
    async def anonymous_recommendations(
        session_id: Annotated[str, Query(min_length=1, max_length=64)],
        k: K = 10,
        context_product_id: ContextProduct = None,
        device: Device = None,
    ) -> Any:
        """Recommendations for an anonymous session."""
        return await answer(None, session_id, k, context_product_id, device)

    async def product_list(product_id: int, k: int, build: Any) -> Any:
        snapshot = snapshot_or_503()
        if isinstance(snapshot, Response):
            return snapshot
        if product_id not in snapshot.products:
            return _error(404, "product_id", "unknown or unsellable product")
        items = build(snapshot, product_id, k)
        return _json(
            {
                "product_id": product_id,
                "items": [_item(snapshot, i) for i in items],
                "snapshot_version": snapshot.version,
            }
        )

    @app.get("/v1/products/{product_id}/similar")
    async def similar(product_id: Id, k: K = 10) -> Any:
        """Products similar to this one (bought by the same customers, then by content)."""
        return await product_list(product_id, k, similar_products)

    @app.get("/v1/products/{product_id}/bought-together")
    async def together(product_id: Id, k: K = 10) -> Any:
        """Products often bought in the same invoice as this one."""
        return await product_list(product_id, k, products_bought_together)

    @app.post("/v1/events", status_code=202)
    async def post_event(request: Request) -> Any:
        """A clickstream event (contract 1.x): produced to Kafka (acknowledged before the
        answer) and applied to the live session, so the next recommendation sees it."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _error(413, "body", f"larger than {MAX_BODY_BYTES} bytes")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, "body", f"larger than {MAX_BODY_BYTES} bytes")
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(400, "body", f"not JSON: {exc}")
        reason = validate_event(event)
        if reason is not None:
            return _error(422, _field_of(reason, event), reason)
        try:
            partition, offset = await serving.produce(event, body)
        except (BrokerUnavailable, TimeoutError, BufferError) as exc:
            cause = exc.cause if isinstance(exc, BrokerUnavailable) else type(exc).__name__
            why = (
                str(exc)
                or f"no acknowledgement in {serving.settings.api_produce_timeout_seconds} s"
            )
            EVENTS_REFUSED.labels(cause).inc()
            log.warning("event %s answered 503: %s", event["event_id"], why)
            return _error(503, "kafka", f"not accepted by the broker, nothing stored: {why}")
        applied_online = False
        if event["event_type"] not in RECOMMENDATION_EVENTS:  # what was shown is not activity
            try:
                async with asyncio.timeout(max(serving.settings.api_deadline_ms, 200) / 1000):
                    await serving.apply(args=apply_args([event], serving.ttls))
                applied_online = True
            except (TimeoutError, aioredis.RedisError):
                # the stream processor applies it from Kafka
                FALLBACKS.labels("event not applied online").inc()
        return _json(
            {
                "event_id": event["event_id"],
                "partition": partition,
                "offset": offset,
                "applied_online": applied_online,
            },
            202,
        )

    @app.get("/v1/live")
    async def live(minutes: Annotated[int, Query(ge=1, le=120)] = 15) -> Any:
        """The live counters per minute (events, active sessions, orders, revenue, conversion),
        the newest orders and the stream processor's counters, from the online store."""
        try:
            async with asyncio.timeout(1.0):
                counters, orders, stats = await asyncio.to_thread(serving.live_view, minutes)
        except (TimeoutError, aioredis.RedisError, redis.RedisError) as exc:
            return _error(503, "online_store", f"unavailable: {type(exc).__name__}")
        return _json({"minutes": counters, "orders": orders, "stream": stats})

    @app.get("/v1/live/stream")
    async def live_stream() -> StreamingResponse:
        """The live view as server-sent events, every LIVE_INTERVAL_SECONDS; a connection ends
        after LIVE_STREAM_SECONDS (browsers reconnect on their own)."""

        async def events() -> AsyncIterator[bytes]:
            ends = time.monotonic() + LIVE_STREAM_SECONDS
            # no request.is_disconnected(): under granian it reports a disconnect at once after
            # the first event; the server cancels this generator when the client goes away
            while time.monotonic() < ends:
                try:
                    counters, orders, stats = await asyncio.to_thread(serving.live_view, 15)
                    payload = {"minutes": counters, "orders": orders, "stream": stats}
                except redis.RedisError as exc:
                    payload = {"error": f"online store unavailable: {type(exc).__name__}"}
                yield b"data: " + orjson.dumps(payload) + b"\n\n"
                await asyncio.sleep(LIVE_INTERVAL_SECONDS)

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/demo", response_class=HTMLResponse, include_in_schema=False)
    async def storefront() -> HTMLResponse:
        """A small storefront: browse as a customer and watch the recommendations change."""
        return HTMLResponse(STOREFRONT.read_text())

    @app.get("/health")
    async def health() -> Any:
        """200 while a snapshot is loaded (the online store's state is reported, not required)."""
        try:
            async with asyncio.timeout(0.5):
                await serving.redis.ping()
            online = "ok"
        except (TimeoutError, aioredis.RedisError) as exc:
            online = f"unavailable: {type(exc).__name__}"
        snapshot = serving.snapshot
        body = {
            "status": "ok" if snapshot else "no snapshot",
            "snapshot_version": snapshot.version if snapshot else None,
            "snapshot_age_seconds": round(time.time() - snapshot.created_at.timestamp(), 1)
            if snapshot
            else None,
            "snapshot_error": None if snapshot else serving.snapshot_error,
            "online_store": online,
            "pid": os.getpid(),
        }
        return _json(body, 200 if snapshot else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Any:
        """Prometheus text: latency histogram, degraded answers, the snapshot's age."""
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # every worker's, not just this one's
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            text = generate_latest(registry)
        else:
            text = generate_latest()
        return PlainTextResponse(text, media_type=CONTENT_TYPE_LATEST)

    return app


def model_version(snapshot_version: str, model: dict[str, Any]) -> str:
    """What an impression records as its model: `<snapshot>/<model>[@<registry version>]`."""
    version = model.get("model_version")
    return f"{snapshot_version}/{model['model']}" + (f"@{version}" if version else "")


def _field_of(reason: str, event: Any) -> str:
    """The contract field a validation message is about (its first known field name)."""
    if isinstance(event, dict):
        for word in reason.replace(":", " ").split():
            if word in event or word in ("event_id", "event_time", "session_id", "product_id"):
                return word
    return "body"
