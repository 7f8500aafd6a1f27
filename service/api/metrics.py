"""`/metrics` (Prometheus text) and the middleware that counts every request.

Route labels are route templates (`/api/v1/customers/{customer_id}`), never raw paths:
ids in labels would make unbounded series and put identifiers in monitoring.
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram
from prometheus_client.exposition import generate_latest

from service.api.openapi import operation
from service.api.routing import route_template
from service.metrics import BreakerStateCollector, Metrics
from service.typedefs import breakers_key, metrics_key

_Children = tuple[Counter, Histogram]
# The labelled children per (registry's metrics, method, route, status): `labels()` costs a
# lock and a few dict lookups per call. Bounded: the method is whatever the client sent.
_children: dict[tuple[Metrics, str, str, int], _Children] = {}
_MAX_CHILDREN = 1024


def _children_of(metrics: Metrics, method: str, route: str, status: int) -> _Children:
    key = (metrics, method, route, status)
    children = _children.get(key)
    if children is None:
        if len(_children) >= _MAX_CHILDREN:
            _children.clear()
        children = _children[key] = (
            metrics.requests.labels(method, route, str(status)),
            metrics.latency.labels(method, route),
        )
    return children


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost, so it counts the status the client really got (problems included)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        count, latency = _children_of(
            request.app[metrics_key], request.method, route_template(request) or "unmatched", status
        )
        count.inc()
        latency.observe(time.perf_counter() - started)


@operation(
    "metrics",
    tag="operations",
    summary="Prometheus metrics (text exposition format)",
    responses={
        200: {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
    },
    authenticated=False,
)
async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(request.app[metrics_key].registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def setup_metrics(app: web.Application) -> None:
    """The app's metric families, the process/platform/GC collectors, breaker states, /metrics."""
    metrics = app[metrics_key] = Metrics.create()
    metrics.register_process_collectors()
    metrics.registry.register(BreakerStateCollector(app[breakers_key]))
    app.router.add_get("/metrics", metrics_handler, allow_head=False)
