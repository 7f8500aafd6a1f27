"""`/metrics` (Prometheus text) and the middleware that counts every request.

Route labels are route templates (`/api/v1/customers/{customer_id}`), never raw paths:
ids in labels would make unbounded series and put identifiers in monitoring.
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest

from service.api.openapi import operation
from service.api.routing import route_template
from service.metrics import BreakerStateCollector, Metrics
from service.typedefs import breakers_key, metrics_key


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
        metrics = request.app[metrics_key]
        route, method = (route_template(request) or "unmatched"), request.method
        metrics.requests.labels(method, route, str(status)).inc()
        metrics.latency.labels(method, route).observe(time.perf_counter() - started)


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
