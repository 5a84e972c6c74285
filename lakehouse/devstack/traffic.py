"""`lakehouse simulate-traffic`: the simulated audience (generator/audience.py) shopping through
the real recommendation API, so an A/B experiment can be run end to end without real users.

Each simulated session is one of the world's customers on their usual device: it asks the API
for recommendations (up to PAGES times), reacts to each list as the audience model says, and
posts what it did as contract events (the click, the product view, the add to cart, the
purchase), which the API produces to Kafka. The API itself records an impression per answer.
Sessions start at `rate` per second, at most `workers` at a time, until `duration` seconds or
`sessions` have passed; a session the API fails is counted with its status and the API's reason,
never retried.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import urllib3

from generator.audience import Audience
from generator.events import DEVICE_NAMES
from generator.world import World
from streaming.contract import SCHEMA_VERSION

PAGES = 3  # recommendation lists a session asks for at most
LEAVE_WITHOUT_CLICK = 0.5  # chance a session ends after a list it clicked nothing in
K = 10
ORDER_BASE = 9 * 10**16  # simulated order ids: above the ERP's and the live stream's
CONNECT_TIMEOUT = 2.0


@dataclass
class VariantTotals:
    sessions: int = 0
    pages: int = 0
    clicked: int = 0  # sessions with a click
    converted: int = 0  # sessions with a purchase
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    revenue: float = 0.0


@dataclass
class TrafficReport:
    sessions: int = 0
    requests: int = 0
    failed_sessions: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    variants: dict[str, VariantTotals] = field(default_factory=dict)
    seconds: float = 0.0
    behind: int = 0  # session starts delayed because every worker was busy

    def to_dict(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "requests": self.requests,
            "failed_sessions": self.failed_sessions,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "sessions_per_second": round(self.sessions / self.seconds, 2) if self.seconds else 0,
            "behind": self.behind,
            "variants": {name: vars(t) for name, t in sorted(self.variants.items())},
        }


class ApiError(RuntimeError):
    pass


class Shopper:
    """One simulated session against the API."""

    def __init__(
        self,
        api: str,
        http: urllib3.PoolManager,
        world: World,
        audience: Audience,
        read_timeout: float,
    ):
        self.api = api.rstrip("/")
        self.timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=read_timeout)
        self.http = http
        self.world = world
        self.audience = audience
        self.order_base = ORDER_BASE + int(time.time() * 1000) % 10**12 * 10**4

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        payload = None if body is None else orjson.dumps(body)
        response = self.http.request(
            method, self.api + path, body=payload, timeout=self.timeout, retries=False
        )
        if response.status >= 300:
            raise ApiError(
                f"{method} {path.partition('?')[0]} → {response.status}{_reason(response.data)}"
            )
        return orjson.loads(response.data)

    def _event(self, session: str, customer: int, event_type: str, **fields: Any) -> dict:
        event = {
            "event_id": str(uuid.uuid4()),
            "event_time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "event_type": event_type,
            "session_id": session,
            "customer_id": customer,
            "device": DEVICE_NAMES[self.world.customer_device[customer - 1]],
            "city": self.world.city_names[self.world.customer_city[customer - 1]],
            "schema_version": SCHEMA_VERSION,
            **fields,
        }
        self._call("POST", "/v1/events", event)
        return event

    def shop(self, rng: np.random.Generator, customer: int, number: int) -> tuple[str, dict, int]:
        """Run one session: (variant, its totals, requests made)."""
        session = f"sim-{uuid.uuid4().hex[:20]}"
        device = DEVICE_NAMES[self.world.customer_device[customer - 1]]
        totals, requests, variant = Counter(), 0, "no experiment"
        for _ in range(PAGES):
            answer = self._call(
                "GET", f"/v1/recommendations/{customer}?session_id={session}&k={K}&device={device}"
            )
            requests += 1
            totals["pages"] += 1
            if answer.get("experiment"):
                variant = f"{answer['experiment']['name']}/{answer['experiment']['variant']}"
            items = {i["product_id"]: i for i in answer["items"]}
            reaction = self.audience.react(rng, customer, list(items))
            if reaction.product_id is None:
                if rng.random() < LEAVE_WITHOUT_CLICK:
                    break
                continue
            product = items[reaction.product_id]
            shown = {"product_id": product["product_id"], "price": product["price"]}
            self._event(
                session,
                customer,
                "recommendation_click",
                request_id=answer["request_id"],
                product_id=product["product_id"],
                position=reaction.position,
            )
            self._event(session, customer, "product_view", **shown)
            requests += 2
            totals["clicks"] += 1
            if reaction.carted:
                self._event(session, customer, "add_to_cart", quantity=1, **shown)
                requests += 1
                totals["carts"] += 1
            if reaction.bought:
                order = self.order_base + number
                self._event(session, customer, "purchase", quantity=1, order_id=order, **shown)
                requests += 1
                totals["purchases"] += 1
                totals["revenue"] += float(product["price"] or 0)
        return variant, dict(totals), requests


def _reason(body: bytes) -> str:
    """The API's own reason for an error answer, if it gave one (": field: reason")."""
    try:
        error = orjson.loads(body)["error"]
        return f": {error['field']}: {error['reason']}"[:300]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ""


def simulate_traffic(
    api: str,
    world: World,
    rate: float,
    duration: float,
    sessions: int | None = None,
    workers: int = 16,
    seed: int = 7,
    on_progress: Callable[[TrafficReport], None] = lambda _: None,
    read_timeout: float = 10.0,
) -> TrafficReport:
    """Drive sessions through the API at `rate` per second for `duration` seconds (or until
    `sessions`); what the audience did, per experiment variant. `read_timeout` bounds each
    answer (above the API's own wait for the broker, so its 503 is what a session reports)."""
    audience = Audience(world)
    http = urllib3.PoolManager(maxsize=workers, headers={"content-type": "application/json"})
    shopper = Shopper(api, http, world, audience, read_timeout)
    customers = audience.shoppers(np.random.default_rng(seed), sessions or int(rate * duration) + 1)
    report, lock = TrafficReport(), threading.Lock()
    slots = threading.Semaphore(workers)

    def one(number: int) -> None:
        rng = np.random.default_rng([seed, number])
        try:
            variant, totals, requests = shopper.shop(rng, int(customers[number]), number)
        except (ApiError, urllib3.exceptions.HTTPError, orjson.JSONDecodeError) as exc:
            with lock:
                report.failed_sessions += 1
                key = str(exc) if isinstance(exc, ApiError) else type(exc).__name__
                report.errors[key] = report.errors.get(key, 0) + 1
            return
        finally:
            slots.release()
        with lock:
            report.sessions += 1
            report.requests += requests
            found = report.variants.setdefault(variant, VariantTotals())
            found.sessions += 1
            for name, value in totals.items():
                setattr(found, name, getattr(found, name) + value)
            found.clicked += totals.get("clicks", 0) > 0
            found.converted += totals.get("purchases", 0) > 0

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shopper") as pool:
        number = 0
        while number < len(customers) and time.monotonic() - started < duration:
            due = started + number / rate
            time.sleep(max(0.0, due - time.monotonic()))
            if not slots.acquire(blocking=False):
                report.behind += 1
                slots.acquire()
            pool.submit(one, number)
            number += 1
            if number % max(1, int(rate)) == 0:
                report.seconds = time.monotonic() - started
                on_progress(report)
    report.seconds = time.monotonic() - started
    http.clear()
    return report
