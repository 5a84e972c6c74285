"""How long the recommendation API takes to score a live session's purchase intent, with and
without its SHAP explanation.

    .venv/bin/python bench/intent_latency.py [--sessions 50] [--requests 1000]

Needs the API running on `API_URL` with a snapshot that holds a purchase-intent model (`./run
demo`, or `lakehouse services up --with api` after `lakehouse ml train`). It posts 1–6 views and
carts for each of `--sessions` new sessions through `POST /v1/events`, then asks
`GET /v1/sessions/{id}/intent` `--requests` times in turn, one at a time, for each setting of
`explain`. Inside: the answer's `took_ms` (the API's own time); client: the round trip on
loopback.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import urllib.request
import uuid

import orjson
from event_to_kpi_latency import positive

from lakehouse.core.settings import load_settings
from serving.snapshot import load_snapshot


def call(method: str, url: str, body: bytes | None = None) -> dict:
    request = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return orjson.loads(response.read())


def seed_sessions(api: str, products: list[int], sessions: int) -> list[str]:
    rng = random.Random(0)
    made = []
    for _ in range(sessions):
        session = f"bench-intent-{uuid.uuid4().hex[:8]}"
        for n in range(rng.randint(1, 6)):
            kind = "add_to_cart" if n % 3 == 0 else "product_view"
            event = {
                "event_id": str(uuid.uuid4()),
                "event_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "event_type": kind,
                "session_id": session,
                "product_id": rng.choice(products),
                "device": "desktop_web",
                "schema_version": "1.0",
                **({"quantity": 1} if kind == "add_to_cart" else {}),
            }
            call("POST", f"{api}/v1/events", orjson.dumps(event))
        made.append(session)
    return made


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=positive(int), default=50)
    parser.add_argument("--requests", type=positive(int), default=1_000)
    args = parser.parse_args()
    settings = load_settings()
    snapshot = load_snapshot(settings.lake)
    if snapshot.intent_model is None:
        raise SystemExit("the snapshot has no purchase-intent model: `lakehouse ml train` first")
    api = settings.api_url
    sessions = seed_sessions(api, list(snapshot.products), args.sessions)
    print(f"\n{args.requests:,} requests per row, one at a time, {args.sessions} live sessions")
    columns = ("inside p50", "inside p99", "client p50", "client p99")
    print(f"{'explain':<8} " + " ".join(f"{c:>11}" for c in columns))
    for explain in ("false", "true"):
        inside, client = [], []
        for n in range(args.requests):
            session = sessions[n % len(sessions)]
            started = time.perf_counter()
            body = call("GET", f"{api}/v1/sessions/{session}/intent?explain={explain}")
            client.append((time.perf_counter() - started) * 1000)
            inside.append(body["took_ms"])
        print(
            f"{explain:<8} {statistics.median(inside):>9.2f}ms {percentile(inside, 0.99):>9.2f}ms "
            f"{statistics.median(client):>9.2f}ms {percentile(client, 0.99):>9.2f}ms"
        )


if __name__ == "__main__":
    main()
