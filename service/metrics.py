"""The Prometheus metric families of one app.

Each app has its own registry, so several apps in one process (the tests) do not clash.
Label values are bounded: route templates, engine, provider and validator names, fixed
outcome words and validator codes; never ids, subjects or personal data.

Domain code (policy engines, CEP resolver, validators, JWKS) gets these objects when it is
built, and never imports aiohttp: the families are plain prometheus-client objects.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.batching import Batch
from service.breaker import Breakers, BreakerState

# A metric update noted by a request and applied later: `inc` or `observe`, and its value.
Update = tuple[Callable[[float], None], float]


def _apply(updates: list[Update]) -> None:
    for update, value in updates:
        update(value)


# An embedded decision takes ~0.15 ms, an OPA sidecar call a few ms: finer than the defaults.
POLICY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

# The fixed words some labels take (docs/operations.md, "Observability").
CEP_OUTCOMES = ("found", "not_found", "error", "skipped_open_breaker", "skipped_budget")
CACHE_RESULTS = ("hit", "miss", "error")
JWKS_OUTCOMES = ("ok", "error", "skipped_open_breaker")


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    policy_decisions: Counter
    policy_latency: Histogram
    cep_lookups: Counter
    cep_cache: Counter
    validator_rejections: Counter
    rate_limited: Counter
    jwks_refreshes: Counter
    audit_entries: Counter
    audit_buffer_depth: Gauge
    audit_flush_latency: Histogram
    webhook_deliveries: Counter
    # The per-request updates (request count and latency, policy decisions): a request
    # notes them, they reach the families in batches (service/batching.py), and the
    # `/metrics` handler applies what is pending before it reads.
    deferred: Batch[Update] = field(default_factory=lambda: Batch(_apply))

    @classmethod
    def create(cls) -> Metrics:
        """The families in a fresh registry (no process collectors: `setup_metrics` adds them)."""
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
            policy_decisions=Counter(
                "policy_decisions",
                "Policy decisions by engine and result (allow, deny, error)",
                ["engine", "result"],
                registry=registry,
            ),
            policy_latency=Histogram(
                "policy_decision_duration_seconds",
                "Time to a policy decision (errors included)",
                ["engine"],
                buckets=POLICY_BUCKETS,
                registry=registry,
            ),
            cep_lookups=Counter(
                "cep_lookups",
                "CEP provider calls by provider and outcome "
                "(found, not_found, error, skipped_open_breaker)",
                ["provider", "outcome"],
                registry=registry,
            ),
            cep_cache=Counter(
                "cep_cache_requests",
                "CEP cache reads by result (hit, miss, error)",
                ["result"],
                registry=registry,
            ),
            validator_rejections=Counter(
                "validator_rejections",
                "Field errors by validator and code",
                ["validator", "code"],
                registry=registry,
            ),
            rate_limited=Counter(
                "rate_limited_requests",
                "Requests refused with 429, by who paid: a token subject or a client address",
                ["caller"],
                registry=registry,
            ),
            jwks_refreshes=Counter(
                "jwks_refreshes",
                "JWKS fetches by outcome (ok, error, skipped_open_breaker)",
                ["outcome"],
                registry=registry,
            ),
            audit_entries=Counter(
                "audit_entries",
                "Audit entries written, by action (create, update, read, export, ...)",
                ["action"],
                registry=registry,
            ),
            audit_buffer_depth=Gauge(
                "audit_read_buffer_depth",
                "Read entries waiting to be written (flushed at least every second)",
                registry=registry,
            ),
            audit_flush_latency=Histogram(
                "audit_flush_duration_seconds",
                "Time to write one batch of buffered read entries",
                registry=registry,
            ),
            webhook_deliveries=Counter(
                "webhook_deliveries",
                "Webhook attempts by endpoint and outcome (delivered, failed, dead)",
                ["endpoint", "outcome"],
                registry=registry,
            ),
        )

    def register_process_collectors(self) -> None:
        """Process (CPU, memory, fds), Python (major.minor only) and GC collectors, as the
        global registry has them; here on the app's registry."""
        ProcessCollector(registry=self.registry)
        self.registry.register(PythonInfoCollector())
        GCCollector(registry=self.registry)


class PythonInfoCollector(Collector):
    """`python_info{implementation, major, minor}`: prometheus-client's platform collector
    also names the patch level, which tells a reader which CVEs are still open."""

    def collect(self) -> Iterator[Metric]:
        major, minor, _ = platform.python_version_tuple()
        gauge = GaugeMetricFamily(
            "python_info",
            "Python platform information",
            labels=["implementation", "major", "minor"],
        )
        gauge.add_metric([platform.python_implementation(), major, minor], 1)
        yield gauge


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
