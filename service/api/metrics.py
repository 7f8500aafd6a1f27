"""`/metrics` (Prometheus text) and the middleware that counts every request.

Route labels are route templates (`/api/v1/customers/{customer_id}`), never raw paths:
ids in labels would make unbounded series and put identifiers in monitoring. Method labels
are the methods some route serves, anything else `other` (llhttp accepts 33 methods).
`/metrics` answers only TCP peers in `metrics.allow`, 404 (as for no route) elsewhere.
"""

from __future__ import annotations

import functools
import ipaddress
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram
from prometheus_client.exposition import generate_latest

from service.api.openapi import operation
from service.api.routing import route_template
from service.errors import NotFound
from service.metrics import BreakerStateCollector, Metrics
from service.typedefs import breakers_key, metrics_key, settings_key

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
OTHER_METHOD = "other"
_served_methods: web.AppKey[frozenset[str]] = web.AppKey("served_methods", frozenset)


def _method(request: web.Request) -> str:
    method = request.method
    return method if method in request.app.get(_served_methods, ()) else OTHER_METHOD


@functools.cache
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def may_read_metrics(request: web.Request) -> bool:
    """The TCP peer, never X-Forwarded-For: a header cannot open the door."""
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    allow = _networks(request.app[settings_key].metrics.allow)
    return any(peer.version == net.version and peer in net for net in allow)


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
        metrics = request.app[metrics_key]
        count, latency = _children_of(
            metrics, _method(request), route_template(request) or "unmatched", status
        )
        note = metrics.deferred.add
        note((count.inc, 1))
        note((latency.observe, time.perf_counter() - started))


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
    if not may_read_metrics(request):
        raise NotFound("There is nothing at this address.")
    metrics = request.app[metrics_key]
    metrics.deferred.flush()
    body = generate_latest(metrics.registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def setup_metrics(app: web.Application) -> None:
    """The app's metric families, the process/platform/GC collectors, breaker states, /metrics."""
    metrics = app[metrics_key] = Metrics.create()
    metrics.register_process_collectors()
    metrics.registry.register(BreakerStateCollector(app[breakers_key]))
    app.router.add_get("/metrics", metrics_handler, allow_head=False)
    app.on_startup.append(_freeze_served_methods)


async def _freeze_served_methods(app: web.Application) -> None:
    """Every route is added by now: the method labels are these, plus `other`."""
    app[_served_methods] = frozenset(route.method for route in app.router.routes()) - {"*"}
