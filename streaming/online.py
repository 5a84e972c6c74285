"""The online store: live session and customer activity, per-minute counters and the order feed
in Redis, written by the stream processor and by the API's `POST /v1/events`, read by the API.

One Lua script applies events atomically: it remembers each event_id (so a replay or a
duplicate within ONLINE_DEDUPE_TTL_SECONDS changes nothing) and makes every change an event
implies, or none. Events go APPLY_CHUNK to a call, as JSON arrays Redis decodes itself (a
script call per event applied 10 k events/s here, mostly packing arguments; chunks 25 k/s).
The stream processor and the API use the same script, so an event the API applied first is
skipped when the processor consumes it from Kafka.

Keys (all with TTLs; the layout is the contract between the writers and the API):

- ``ev:<event_id>``: an event applied (dedupe);
- ``sess:<session_id>:view|cart|buy``, ``cust:<customer_id>:view|cart|buy``: sorted sets of
  product ids scored by the event time in epoch milliseconds, newest kept (``KEEP`` each);
- ``sess:<session_id>:start``: the time of the session's first product event (purchase intent);
- ``live:m:<epoch minute>``: a hash of counters (events, product_views, add_to_carts,
  purchases, revenue) with HyperLogLogs ``…:sessions``, ``…:buyers`` (sessions with a purchase)
  and ``…:orders`` beside it;
- ``live:orders``: a Redis stream of the newest purchase lines (the live order ticker);
- ``stream:stats``: the stream processor's counters and heartbeat, and the newest event time
  applied (``newest_event_ms``, by either writer);
- ``api:health``: a list of the recommendation API's health rows (serving/health.py), newest
  first, ``API_HEALTH_KEPT`` of them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from lakehouse.core.settings import Settings

KEEP = 50  # products kept per activity set: what a session re-rank can use
LIVE_TTL_SECONDS = 2 * 86_400  # per-minute counters: today and yesterday
ORDER_FEED_LENGTH = 1_000
STATS_KEY = "stream:stats"
ORDER_FEED_KEY = "live:orders"
API_HEALTH_KEY = "api:health"
API_HEALTH_KEPT = 720  # an hour of rows at one every 5 s
KINDS = ("view", "cart", "buy")

APPLY_CHUNK = 200  # events per script call: Redis runs a script alone, keep each short

# ARGV[1..6]: dedupe, session, customer and live TTLs, products kept per set, order feed length;
# ARGV[7..]: one JSON array per event (see `event_fields`). Returns how many were new.
_APPLY = """
local dedupe, session_ttl, customer_ttl, live_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local keep, feed = tonumber(ARGV[5]), ARGV[6]
local kinds = {product_view = 'view', add_to_cart = 'cart', purchase = 'buy'}
local applied, newest = 0, 0
for i = 7, #ARGV do
  local e = cjson.decode(ARGV[i])
  local id, t, sid, cid, pid, ts, minute, amount, order, city =
    e[1], e[2], e[3], e[4], e[5], e[6], e[7], e[8], e[9], e[10]
  if redis.call('SET', 'ev:' .. id, 1, 'NX', 'EX', dedupe) then
    applied = applied + 1
    if tonumber(ts) > newest then newest = tonumber(ts) end
    local m = 'live:m:' .. minute
    redis.call('PFADD', m .. ':sessions', sid)
    if redis.call('HINCRBY', m, 'events', 1) == 1 then
      redis.call('EXPIRE', m, live_ttl)
      redis.call('EXPIRE', m .. ':sessions', live_ttl)
    end
    local kind = kinds[t]
    if t == 'product_view' then redis.call('HINCRBY', m, 'product_views', 1) end
    if t == 'add_to_cart' then redis.call('HINCRBY', m, 'add_to_carts', 1) end
    if pid ~= '' then
      redis.call('SET', 'sess:' .. sid .. ':start', ts, 'NX', 'EX', session_ttl)
      local owners = {{'sess:' .. sid, session_ttl}}
      if cid ~= '' then owners[2] = {'cust:' .. cid, customer_ttl} end
      for _, owner in ipairs(owners) do
        local prefix, ttl = owner[1], owner[2]
        if t == 'remove_from_cart' then
          redis.call('ZREM', prefix .. ':cart', pid)
        elseif kind then
          local key = prefix .. ':' .. kind
          redis.call('ZADD', key, 'GT', ts, pid)
          redis.call('ZREMRANGEBYRANK', key, 0, -(keep + 1))
          redis.call('EXPIRE', key, ttl)
          if kind == 'buy' then redis.call('ZREM', prefix .. ':cart', pid) end
        end
      end
    end
    if t == 'purchase' then
      redis.call('HINCRBYFLOAT', m, 'revenue', amount)
      redis.call('PFADD', m .. ':orders', order)
      redis.call('PFADD', m .. ':buyers', sid)
      if redis.call('HINCRBY', m, 'purchases', 1) == 1 then
        redis.call('EXPIRE', m .. ':orders', live_ttl)
        redis.call('EXPIRE', m .. ':buyers', live_ttl)
      end
      redis.call('XADD', 'live:orders', 'MAXLEN', '~', feed, '*',
        'event_time', ts, 'order_id', order, 'customer_id', cid, 'product_id', pid,
        'amount', amount, 'city', city)
    end
  end
end
if newest > tonumber(redis.call('HGET', 'stream:stats', 'newest_event_ms') or '0') then
  redis.call('HSET', 'stream:stats', 'newest_event_ms', newest)
end
return applied
"""


@dataclass(frozen=True)
class Ttls:
    """How long the online store keeps what it is given (from the settings)."""

    session: int
    customer: int
    dedupe: int

    @classmethod
    def of(cls, settings: Settings) -> Ttls:
        return cls(
            session=settings.online_session_ttl_seconds,
            customer=settings.online_customer_ttl_seconds,
            dedupe=settings.online_dedupe_ttl_seconds,
        )


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def event_fields(event: Mapping[str, Any]) -> bytes:
    """One contract event (already validated) as the apply script reads it."""
    when = dt.datetime.fromisoformat(event["event_time"].replace("Z", "+00:00"))
    millis = int(when.timestamp() * 1000)
    amount = 0.0
    if event["event_type"] == "purchase":
        amount = round(float(event["price"]) * int(event["quantity"]), 2)
    return orjson.dumps(
        [
            event["event_id"],
            event["event_type"],
            event["session_id"],
            _text(event.get("customer_id")),
            _text(event.get("product_id")),
            str(millis),
            str(millis // 60_000),
            repr(amount),
            _text(event.get("order_id")),
            _text(event.get("city")),
        ]
    )


def apply_args(events: Iterable[Mapping[str, Any]], ttls: Ttls) -> list[Any]:
    """The apply script's arguments for a few events (up to APPLY_CHUNK)."""
    head = [ttls.dedupe, ttls.session, ttls.customer, LIVE_TTL_SECONDS, KEEP, ORDER_FEED_LENGTH]
    return [*head, *(event_fields(e) for e in events)]


def apply_script(client: Any) -> Any:
    """The apply script registered on a client (sync or asyncio); call it with
    `args=apply_args(events, ttls)`."""
    return client.register_script(_APPLY)


# KEYS: activity sets; ARGV[1]: how many of each, newest first. One command for the API to send
# and parse: a pipeline of a ZREVRANGE per set cost four times the client CPU.
_READ = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('ZREVRANGE', key, 0, ARGV[1] - 1) end
return out
"""

Activity = dict[str, dict[str, list[int]]]


def read_script(client: Any) -> Any:
    """The activity read script on a client (sync or asyncio); call it with
    `keys=activity_keys(…), args=[limit]` and parse the reply with `parse_activity`."""
    return client.register_script(_READ)


def activity_keys(session_id: str | None, customer_id: int | None) -> list[str]:
    owners = [f"sess:{session_id}" if session_id else None]
    owners.append(f"cust:{customer_id}" if customer_id is not None else None)
    return [f"{owner}:{kind}" for owner in owners if owner for kind in KINDS]


def parse_activity(keys: list[str], reply: list[Any]) -> Activity:
    """{"session": {"view": [product, …], "cart": …, "buy": …}, "customer": {…}}, newest
    first."""
    found: Activity = {o: {k: [] for k in KINDS} for o in ("session", "customer")}
    for key, rows in zip(keys, reply, strict=True):
        owner = "session" if key.startswith("sess:") else "customer"
        found[owner][key.rsplit(":", 1)[1]] = [int(p) for p in rows]
    return found


@dataclass(frozen=True)
class SessionTimes:
    views: list[tuple[int, float]]  # (product, epoch ms), oldest first
    cart: list[tuple[int, float]]
    start_ms: float | None

    @property
    def empty(self) -> bool:
        return not (self.views or self.cart or self.start_ms)


def session_times_commands(pipe: Any, session_id: str) -> None:
    """Queue the reads of `SessionTimes` on a pipeline (sync or asyncio)."""
    pipe.zrange(f"sess:{session_id}:view", 0, -1, withscores=True)
    pipe.zrange(f"sess:{session_id}:cart", 0, -1, withscores=True)
    pipe.get(f"sess:{session_id}:start")


def parse_session_times(replies: list[Any]) -> SessionTimes:
    views, cart, start = replies
    return SessionTimes(
        [(int(p), float(ms)) for p, ms in views],
        [(int(p), float(ms)) for p, ms in cart],
        float(start) if start is not None else None,
    )


class OnlineStore:
    """Writes events to and reads live state from Redis (one client, thread-safe pool)."""

    def __init__(self, url: str, ttls: Ttls, timeout: float = 2.0) -> None:
        self.url = url
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.ttls = ttls
        self._apply = apply_script(self.client)
        self._read = read_script(self.client)

    def close(self) -> None:
        self.client.close()

    def apply(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Apply contract events in one round trip; how many were new (not seen before)."""
        if not events:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(events), APPLY_CHUNK):
            chunk = events[start : start + APPLY_CHUNK]
            self._apply(args=apply_args(chunk, self.ttls), client=pipe)
        return sum(int(applied) for applied in pipe.execute())

    # -- reads (the API) ------------------------------------------------------------------

    def activity(
        self, session_id: str | None, customer_id: int | None, limit: int = 20
    ) -> Activity:
        """A session's and a customer's products, newest first (see `parse_activity`)."""
        keys = activity_keys(session_id, customer_id)
        reply = self._read(keys=keys, args=[limit]) if keys else []
        return parse_activity(keys, reply)

    def minutes(self, last: int = 60, now: float | None = None) -> list[dict[str, Any]]:
        """Per-minute live counters of the last `last` minutes (oldest first)."""
        current = int((time.time() if now is None else now) // 60)
        minutes = list(range(current - last + 1, current + 1))
        pipe = self.client.pipeline(transaction=False)
        for minute in minutes:
            key = f"live:m:{minute}"
            pipe.hgetall(key)
            pipe.pfcount(f"{key}:sessions")
            pipe.pfcount(f"{key}:buyers")
            pipe.pfcount(f"{key}:orders")
        replies = pipe.execute()
        rows = []
        for i, minute in enumerate(minutes):
            counters, sessions, buyers, orders = replies[4 * i : 4 * i + 4]
            values = {k.decode(): float(v) for k, v in counters.items()}
            rows.append(
                {
                    "minute": dt.datetime.fromtimestamp(minute * 60, dt.UTC).isoformat(),
                    "events": int(values.get("events", 0)),
                    "product_views": int(values.get("product_views", 0)),
                    "add_to_carts": int(values.get("add_to_carts", 0)),
                    "purchases": int(values.get("purchases", 0)),
                    "orders": orders,
                    "revenue": round(values.get("revenue", 0.0), 2),
                    "active_sessions": sessions,
                    "converted_sessions": buyers,
                    "conversion": round(buyers / sessions, 4) if sessions else 0.0,
                }
            )
        return rows

    def orders(self, count: int = 20) -> list[dict[str, Any]]:
        """The newest purchase lines, newest first."""
        rows = []
        for entry_id, fields in self.client.xrevrange(ORDER_FEED_KEY, count=count):
            row = {k.decode(): v.decode() for k, v in fields.items()}
            row["id"] = entry_id.decode()
            rows.append(row)
        return rows

    def session_times(self, session_id: str) -> SessionTimes:
        """The session's viewed and carted products with their newest times, and its start."""
        pipe = self.client.pipeline(transaction=False)
        session_times_commands(pipe, session_id)
        return parse_session_times(pipe.execute())

    def record_api_health(self, row: Mapping[str, Any]) -> None:
        """Keep one API health row (newest first, the newest API_HEALTH_KEPT)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.lpush(API_HEALTH_KEY, orjson.dumps(row))
        pipe.ltrim(API_HEALTH_KEY, 0, API_HEALTH_KEPT - 1)
        pipe.expire(API_HEALTH_KEY, LIVE_TTL_SECONDS)
        pipe.execute()

    def api_health(self) -> list[dict[str, Any]]:
        """The API health rows kept, newest first."""
        return [orjson.loads(row) for row in self.client.lrange(API_HEALTH_KEY, 0, -1)]

    def stats(self) -> dict[str, float]:
        """The stream processor's counters and heartbeat (epoch seconds)."""
        return {k.decode(): float(v) for k, v in self.client.hgetall(STATS_KEY).items()}
