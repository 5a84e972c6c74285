"""The recommendation API's health, from its own Prometheus metrics (`GET /metrics`).

The stream processor's publisher scrapes them every STREAM_KPI_SECONDS (lakehouse/devstack/
stream.py) and keeps one row per scrape in the online store; the stream file turns the rows
into `stream_api_health` for the Real-time dashboard. A row covers the interval since the
previous scrape (the difference of the cumulative counters; an API restart resets them, and then
the new counts are the interval's): recommendation requests and their rate, the latency
quantiles estimated from the histogram buckets as Prometheus' `histogram_quantile` does (linear
within a bucket), the answers served degraded and their share, impressions the broker refused,
and the serving snapshot's age.
"""

from __future__ import annotations

import math
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

RECOMMENDATIONS = ("/v1/recommendations/{customer_id}", "/v1/recommendations")
SCRAPE_TIMEOUT = 1.0


@dataclass(frozen=True)
class Counters:
    """The cumulative counters of one scrape."""

    at: float  # epoch seconds
    buckets: dict[float, float] = field(default_factory=dict)  # le -> requests up to it
    degraded: float = 0.0
    impressions_lost: float = 0.0
    snapshot_created: float | None = None  # epoch seconds


def parse(text: str, at: float) -> Counters:
    """The counters the health rows need, from Prometheus text (every worker's, summed)."""
    buckets: dict[float, float] = {}
    degraded = lost = 0.0
    created = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "api_request_seconds_bucket":
                if sample.labels.get("endpoint") in RECOMMENDATIONS:
                    le = float(sample.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + sample.value
            elif sample.name == "api_degraded_total":
                degraded += sample.value
            elif sample.name == "api_impressions_lost_total":
                lost += sample.value
            elif sample.name == "api_snapshot_created_seconds" and sample.value > 0:
                created = max(created or 0.0, sample.value)
    return Counters(at, buckets, degraded, lost, created)


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile of a cumulative histogram (Prometheus' histogram_quantile): linear
    within the bucket it falls in; the last finite bound when it falls in +Inf."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, count
    return lower


def _delta(now: float, before: float) -> float:
    return now - before if now >= before else now  # a restart reset the counter


def health(previous: Counters | None, current: Counters) -> dict[str, Any]:
    """One row: the interval since `previous` (or since the API started)."""
    before = previous.buckets if previous else {}
    buckets = {le: _delta(n, before.get(le, 0.0)) for le, n in current.buckets.items()}
    requests = max(buckets.values(), default=0.0)
    seconds = current.at - previous.at if previous else 0.0
    degraded = _delta(current.degraded, previous.degraded if previous else 0.0)

    def ms(q: float) -> float | None:
        value = quantile(buckets, q)
        return None if value is None else round(value * 1000, 2)

    return {
        "scraped_at": current.at,
        "api_up": True,
        "requests": int(requests),
        "requests_per_second": round(requests / seconds, 2) if seconds > 0 else None,
        "p50_ms": ms(0.5),
        "p95_ms": ms(0.95),
        "p99_ms": ms(0.99),
        "degraded": int(degraded),
        "degraded_share": round(degraded / requests, 4) if requests else None,
        "impressions_lost": int(
            _delta(current.impressions_lost, previous.impressions_lost if previous else 0.0)
        ),
        "snapshot_age_seconds": (
            round(current.at - current.snapshot_created, 1) if current.snapshot_created else None
        ),
    }


def down(at: float) -> dict[str, Any]:
    """The row of a scrape that found no API."""
    return {"scraped_at": at, "api_up": False, "requests": 0}


def scrape(api_url: str) -> Counters:
    """Read and parse the API's metrics now (OSError when it does not answer)."""
    url = api_url.rstrip("/") + "/metrics"
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as response:  # noqa: S310 - ours
        return parse(response.read().decode(), time.time())
