"""Turn a simulated day into contract events (dicts, then JSON bytes) and event files."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import orjson

from generator import reference as ref
from generator.simulate import EVENT_TYPES, PURCHASE, DayBatch, Simulation
from generator.world import Scale, World, build_world
from streaming.contract import SCHEMA_VERSION

DEVICE_NAMES = [d[0] for d in ref.DEVICES]


def _uuid_strings(raw: np.ndarray) -> list[str]:
    text = raw.tobytes().hex()
    return [
        f"{text[i : i + 8]}-{text[i + 8 : i + 12]}-{text[i + 12 : i + 16]}-{text[i + 16 : i + 20]}-"
        f"{text[i + 20 : i + 32]}"
        for i in range(0, len(text), 32)
    ]


def event_records(world: World, batch: DayBatch) -> Iterator[dict]:
    """The day's events as contract dicts, in event-time order. Absent optional fields are
    omitted, except customer_id, which is an explicit null for anonymous visitors."""
    ev = batch.events
    n = batch.n_events
    if n == 0:
        return
    ids = _uuid_strings(ev["uuid"])
    sessions = _uuid_strings(ev["session_uuid"])
    times = [
        t + "Z" for t in np.datetime_as_string(ev["event_time"].astype("datetime64[ms]"), unit="ms")
    ]
    products = ev["product"]
    used = np.unique(products[products >= 0])
    path = {int(p): world.category_path(int(p)) for p in used}
    brand = {int(p): world.brand_names[world.product_brand[p]] for p in used}
    queries = batch.search_queries
    for i, (etype, customer, product, price, qty, device, city, order) in enumerate(
        zip(
            ev["event_type"].tolist(),
            ev["customer"].tolist(),
            products.tolist(),
            ev["price"].tolist(),
            ev["quantity"].tolist(),
            ev["device"].tolist(),
            ev["city"].tolist(),
            ev["order"].tolist(),
            strict=True,
        )
    ):
        record = {
            "event_id": ids[i],
            "event_time": times[i],
            "event_type": EVENT_TYPES[etype],
            "session_id": sessions[i],
            "customer_id": customer + 1 if customer >= 0 else None,
        }
        if product >= 0:
            record["product_id"] = product + 1
            record["category_path"] = path[product]
            record["brand"] = brand[product]
            record["price"] = round(price, 2)
        if qty > 0:
            record["quantity"] = qty
        if etype == PURCHASE:
            record["order_id"] = order
        if i in queries:
            record["search_query"] = queries[i]
        record["device"] = DEVICE_NAMES[device]
        record["city"] = world.city_names[city]
        record["schema_version"] = SCHEMA_VERSION
        yield record


def session_keys(batch: DayBatch) -> list[bytes]:
    """Kafka message keys: the session id, so a session's events stay in order."""
    return [s.encode() for s in _uuid_strings(batch.events["session_uuid"])]


class EventFiles:
    """Events as gzip'd JSON lines, one file per day: <root>/date=YYYY-MM-DD/events.jsonl.gz.
    Each day is written to a temporary file and renamed, so a re-run replaces it whole."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, date: dt.date) -> Path:
        return self.root / f"date={date.isoformat()}" / "events.jsonl.gz"

    def missing(self, scale: Scale, until_day: int) -> list[dt.date]:
        """Days before until_day whose file is not written yet."""
        dates = [scale.start + dt.timedelta(days=d) for d in range(until_day)]
        return [d for d in dates if not self.path(d).exists()]

    def write_day(self, world: World, batch: DayBatch) -> int:
        target = self.path(batch.date)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        count = 0
        with gzip.open(tmp, "wb", compresslevel=1) as out:
            chunk = []
            for record in event_records(world, batch):
                chunk.append(orjson.dumps(record))
                count += 1
                if len(chunk) == 10_000:
                    out.write(b"\n".join(chunk) + b"\n")
                    chunk = []
            if chunk:
                out.write(b"\n".join(chunk) + b"\n")
        tmp.replace(target)
        return count


def simulated_messages(
    scale: Scale, first_day: int = 0, days: int | None = None, key_by: str = "session"
) -> Iterator[tuple[bytes, dict, int]]:
    """(key, event, event_time_ms) for the simulated days [first_day, first_day + days).

    Days before first_day are simulated but not emitted: the simulation is sequential."""
    world = build_world(scale)
    simulation = Simulation(world)
    last = scale.days if days is None else min(first_day + days, scale.days)
    for batch in simulation.days(last):
        if batch.day < first_day:
            continue
        keys = session_keys(batch)
        times = batch.events["event_time"].tolist()
        for i, record in enumerate(event_records(world, batch)):
            if key_by == "customer" and record["customer_id"] is not None:
                key = str(record["customer_id"]).encode()
            else:
                key = keys[i]
            yield key, record, times[i]


LIVE_ORDER_OFFSET = 10**12  # each pass over the world gets order ids of its own


def live_messages(
    scale: Scale, key_by: str = "session", clock: Callable[[], float] = time.time
) -> Iterator[tuple[bytes, dict, int]]:
    """The world's sessions as a live clickstream, forever: each event is stamped with the time
    it is taken (the producer paces them) and gets a new event id; order ids move on by
    LIVE_ORDER_OFFSET with each pass over the world, the first included, so live orders never
    repeat the world's own or an earlier pass's. A replayed session is a new visit: its id is the
    world's with this stream's token and the pass appended (`<id>-<token>-<pass>`), so it never
    merges with the world's session or an earlier replay of it (a restarted stream included)."""
    token = uuid.uuid4().hex[:6]
    for cycle in itertools.count(1):
        for key, record, _ in simulated_messages(scale, key_by=key_by):
            now = clock()
            session = f"{record['session_id']}-{token}-{cycle}"
            live = {
                **record,
                "event_id": str(uuid.uuid4()),
                "event_time": dt.datetime.fromtimestamp(now, dt.UTC).strftime(
                    "%Y-%m-%dT%H:%M:%S.%fZ"
                ),
                "session_id": session,
            }
            if live.get("order_id") is not None:
                live["order_id"] += cycle * LIVE_ORDER_OFFSET
            yield (session.encode() if key_by == "session" else key), live, int(now * 1000)
