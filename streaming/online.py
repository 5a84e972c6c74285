"""The online store: live session and customer activity, per-minute counters and the order feed
in Redis, written by the stream processor and by the API's `POST /v1/events`, read by the API.

One Lua script applies one event atomically: it remembers the event_id (so a replay or a
duplicate within ONLINE_DEDUPE_TTL_SECONDS changes nothing) and makes every change the event
implies, or none. The stream processor and the API use the same script, so an event the API
applied first is skipped when the processor consumes it from Kafka.

Keys (all with TTLs; the layout is the contract between the writers and the API):

- ``ev:<event_id>``: an event applied (dedupe);
- ``sess:<session_id>:view|cart|buy``, ``cust:<customer_id>:view|cart|buy``: sorted sets of
  product ids scored by the event time in epoch milliseconds, newest kept (``KEEP`` each);
- ``live:m:<epoch minute>``: a hash of counters (events, product_views, add_to_carts,
  purchases, revenue) with HyperLogLogs ``…:sessions``, ``…:buyers`` (sessions with a purchase)
  and ``…:orders`` beside it;
- ``live:orders``: a Redis stream of the newest purchase lines (the live order ticker);
- ``stream:stats``: the stream processor's counters and heartbeat.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

KEEP = 50  # products kept per activity set: what a session re-rank can use
LIVE_TTL_SECONDS = 2 * 86_400  # per-minute counters: today and yesterday
ORDER_FEED_LENGTH = 1_000
STATS_KEY = "stream:stats"
ORDER_FEED_KEY = "live:orders"
KINDS = ("view", "cart", "buy")

_APPLY = """
if not redis.call('SET', 'ev:' .. ARGV[1], 1, 'NX', 'EX', ARGV[10]) then return 0 end
local t, sid, cid, pid, ts = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local m = 'live:m:' .. ARGV[7]
local live_ttl = ARGV[13]
redis.call('HINCRBY', m, 'events', 1)
redis.call('PFADD', m .. ':sessions', sid)
redis.call('EXPIRE', m, live_ttl)
redis.call('EXPIRE', m .. ':sessions', live_ttl)
local kind = ({product_view = 'view', add_to_cart = 'cart', purchase = 'buy'})[t]
if t == 'product_view' then redis.call('HINCRBY', m, 'product_views', 1) end
if t == 'add_to_cart' then redis.call('HINCRBY', m, 'add_to_carts', 1) end
if pid ~= '' then
  local owners = {{'sess:' .. sid, ARGV[11]}}
  if cid ~= '' then owners[2] = {'cust:' .. cid, ARGV[12]} end
  for _, owner in ipairs(owners) do
    local prefix, ttl = owner[1], owner[2]
    if t == 'remove_from_cart' then
      redis.call('ZREM', prefix .. ':cart', pid)
    elseif kind then
      local key = prefix .. ':' .. kind
      redis.call('ZADD', key, 'GT', ts, pid)
      redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(ARGV[14]) + 1))
      redis.call('EXPIRE', key, ttl)
      if kind == 'buy' then redis.call('ZREM', prefix .. ':cart', pid) end
    end
  end
end
if t == 'purchase' then
  redis.call('HINCRBY', m, 'purchases', 1)
  redis.call('HINCRBYFLOAT', m, 'revenue', ARGV[8])
  redis.call('PFADD', m .. ':orders', ARGV[9])
  redis.call('PFADD', m .. ':buyers', sid)
  redis.call('EXPIRE', m .. ':orders', live_ttl)
  redis.call('EXPIRE', m .. ':buyers', live_ttl)
  redis.call('XADD', 'live:orders', 'MAXLEN', '~', ARGV[15], '*',
    'event_time', ts, 'order_id', ARGV[9], 'customer_id', cid, 'product_id', pid,
    'amount', ARGV[8], 'city', ARGV[16])
end
return 1
"""


@dataclass(frozen=True)
class Ttls:
    """How long the online store keeps what it is given (from the settings)."""

    session: int
    customer: int
    dedupe: int


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def event_args(event: Mapping[str, Any], ttls: Ttls) -> list[str]:
    """The apply script's arguments for one contract event (already validated)."""
    when = dt.datetime.fromisoformat(event["event_time"].replace("Z", "+00:00"))
    millis = int(when.timestamp() * 1000)
    amount = 0.0
    if event["event_type"] == "purchase":
        amount = float(event["price"]) * int(event["quantity"])
    return [
        event["event_id"],
        event["event_type"],
        event["session_id"],
        _text(event.get("customer_id")),
        _text(event.get("product_id")),
        str(millis),
        str(millis // 60_000),
        repr(round(amount, 2)),
        _text(event.get("order_id")),
        str(ttls.dedupe),
        str(ttls.session),
        str(ttls.customer),
        str(LIVE_TTL_SECONDS),
        str(KEEP),
        str(ORDER_FEED_LENGTH),
        _text(event.get("city")),
    ]


def apply_script(client: Any) -> Any:
    """The apply script registered on a client (sync or asyncio); call it with
    `args=event_args(event, ttls)`."""
    return client.register_script(_APPLY)


Wanted = list[tuple[str, str]]


def queue_activity(
    pipe: Any, session_id: str | None, customer_id: int | None, limit: int = 20
) -> Wanted:
    """Queue the reads of a session's and a customer's activity on a pipeline (sync or
    asyncio); `read_activity` parses the replies."""
    owners = {
        "session": f"sess:{session_id}" if session_id else None,
        "customer": f"cust:{customer_id}" if customer_id is not None else None,
    }
    wanted = [(o, k) for o, prefix in owners.items() if prefix for k in KINDS]
    for owner, kind in wanted:
        pipe.zrevrange(f"{owners[owner]}:{kind}", 0, limit - 1, withscores=True)
    return wanted


def read_activity(
    wanted: Wanted, replies: list[Any]
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    found: dict[str, dict[str, list[tuple[int, float]]]] = {
        o: {k: [] for k in KINDS} for o in ("session", "customer")
    }
    for (owner, kind), rows in zip(wanted, replies, strict=True):
        found[owner][kind] = [(int(p), s) for p, s in rows]
    return found


class OnlineStore:
    """Writes events to and reads live state from Redis (one client, thread-safe pool)."""

    def __init__(self, url: str, ttls: Ttls, timeout: float = 2.0) -> None:
        self.url = url
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.ttls = ttls
        self._apply = apply_script(self.client)

    def close(self) -> None:
        self.client.close()

    def apply(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Apply contract events in one round trip; how many were new (not seen before)."""
        pipe = self.client.pipeline(transaction=False)
        count = 0
        for event in events:
            self._apply(args=event_args(event, self.ttls), client=pipe)
            count += 1
        if not count:
            return 0
        return sum(int(applied) for applied in pipe.execute())

    # -- reads (the API) ------------------------------------------------------------------

    def activity(
        self, session_id: str | None, customer_id: int | None, limit: int = 20
    ) -> dict[str, dict[str, list[tuple[int, float]]]]:
        """Newest first: {"session": {"view": [(product, epoch ms), …], "cart": …, "buy": …},
        "customer": {…}} in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        wanted = queue_activity(pipe, session_id, customer_id, limit)
        return read_activity(wanted, pipe.execute())

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

    def stats(self) -> dict[str, float]:
        """The stream processor's counters and heartbeat (epoch seconds)."""
        return {k.decode(): float(v) for k, v in self.client.hgetall(STATS_KEY).items()}
