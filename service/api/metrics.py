"""Prometheus metrics at `/metrics`: request counts and latencies per route.

Each app has its own registry, so several apps in one process (the tests) do not clash.
Route labels are route templates (`/api/v1/customers/{customer_id}`), never raw paths:
ids in labels would make unbounded series and put identifiers in monitoring.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest


@dataclass(frozen=True)
class HttpMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram

    @classmethod
    def create(cls) -> HttpMetrics:
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


metrics_key = web.AppKey("metrics", HttpMetrics)


def _route(request: web.Request) -> str:
    if request.match_info.http_exception is not None:
        return "unmatched"
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Outermost, so it counts the status the client really got (problems included)."""
    started = time.perf_counter()
    status = 500
    try:
        response: web.StreamResponse = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics = request.app[metrics_key]
        route, method = _route(request), request.method
        metrics.requests.labels(method, route, str(status)).inc()
        metrics.latency.labels(method, route).observe(time.perf_counter() - started)


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(request.app[metrics_key].registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def setup_metrics(app: web.Application) -> None:
    app[metrics_key] = HttpMetrics.create()
    app.router.add_get("/metrics", metrics_handler)
