"""The Prometheus metric families of one app.

Each app has its own registry, so several apps in one process (the tests) do not clash.
Label values are bounded: route templates, never ids or personal data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.breaker import Breakers, BreakerState


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "http_requests",
                "HTTP requests answered",
                ["method", "route", "status"],
                registry=registry,
            ),
            latency=Histogram(
                "http_request_duration_seconds",
                "Time to answer",
                ["method", "route"],
                registry=registry,
            ),
        )


# Ordered by severity, so `circuit_breaker_state > 0` is an alert rule.
BREAKER_STATE_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class BreakerStateCollector(Collector):
    """`circuit_breaker_state{dependency}`: read at scrape time (open turns half-open by time)."""

    def __init__(self, breakers: Breakers) -> None:
        self._breakers = breakers

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "circuit_breaker_state",
            "Circuit breaker per dependency: 0 closed, 1 half-open, 2 open",
            labels=["dependency"],
        )
        for breaker in self._breakers:
            gauge.add_metric([breaker.name], BREAKER_STATE_VALUES[breaker.state])
        yield gauge
