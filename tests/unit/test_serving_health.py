"""The API's health rows from its Prometheus metrics (serving/health.py): quantiles from the
histogram buckets as Prometheus computes them, intervals between scrapes, counter resets."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from serving.health import health, parse, quantile

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def metrics(latencies: list[float], degraded: int, created: float) -> str:
    """Prometheus text as the API writes it, for these recommendation latencies."""
    registry = CollectorRegistry()
    latency = Histogram("api_request_seconds", "", ["endpoint"], buckets=BUCKETS, registry=registry)
    for seconds in latencies:
        latency.labels("/v1/recommendations/{customer_id}").observe(seconds)
    latency.labels("/health").observe(0.9)  # another endpoint: not counted
    Counter("api_degraded", "", ["cause"], registry=registry).labels("x").inc(degraded)
    Gauge("api_snapshot_created_seconds", "", registry=registry).set(created)
    return generate_latest(registry).decode()


def test_quantiles_interpolate_within_the_bucket_like_prometheus() -> None:
    buckets = {0.005: 50.0, 0.01: 90.0, 0.025: 100.0, float("inf"): 100.0}
    assert quantile(buckets, 0.5) == pytest.approx(0.005)  # the 50th of 100 ends bucket one
    assert quantile(buckets, 0.7) == pytest.approx(0.005 + 0.005 * 20 / 40)
    assert quantile(buckets, 0.95) == pytest.approx(0.01 + 0.015 * 5 / 10)
    assert quantile({0.1: 0.0, float("inf"): 0.0}, 0.5) is None
    assert quantile({0.1: 0.0, float("inf"): 4.0}, 0.5) == 0.1  # beyond the last bound


def test_a_row_covers_the_interval_since_the_previous_scrape() -> None:
    first = parse(metrics([0.002] * 100, degraded=0, created=1_000.0), at=1_060.0)
    second = parse(metrics([0.002] * 100 + [0.02] * 100, degraded=10, created=1_000.0), 1_070.0)
    row = health(first, second)
    assert row["requests"] == 100 and row["requests_per_second"] == 10.0
    assert 10 < row["p50_ms"] <= 25 and row["p99_ms"] <= 25  # only the new, slower requests
    assert row["degraded"] == 10 and row["degraded_share"] == 0.1
    assert row["snapshot_age_seconds"] == 70.0 and row["api_up"]

    restarted = parse(metrics([0.002] * 5, degraded=0, created=1_065.0), at=1_080.0)
    after = health(second, restarted)  # the counters went back: the new counts are the interval
    assert after["requests"] == 5 and after["p50_ms"] <= 2.5 and after["degraded"] == 0
