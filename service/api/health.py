"""Liveness and readiness probes: public, never behind auth."""

from __future__ import annotations

from aiohttp import web

from service.api.openapi import json_content, operation
from service.api.schemas import LiveSchema, ReadySchema
from service.errors import ServiceUnavailable
from service.typedefs import breakers_key, policy_engine_key, repository_key


@operation(
    "live",
    tag="health",
    summary="The process is up",
    responses={200: json_content(LiveSchema, "Up")},
    authenticated=False,
)
async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@operation(
    "ready",
    tag="health",
    summary="Dependencies answer (503 names the one that does not)",
    responses={
        200: json_content(ReadySchema, "Every dependency answers"),
        503: json_content(ReadySchema, "At least one dependency is down"),
    },
    authenticated=False,
)
async def ready(request: web.Request) -> web.Response:
    probes = {
        "storage": request.app[repository_key].ping,
        "policy_engine": request.app[policy_engine_key].check,
    }
    checks = {}
    for name, probe in probes.items():
        try:
            await probe()
            checks[name] = "ok"
        except ServiceUnavailable:
            checks[name] = "down"
    healthy = all(state == "ok" for state in checks.values())
    # Informational: an open CEP breaker still serves (the next provider answers).
    breakers = request.app[breakers_key].states()
    return web.json_response(
        {"status": "ok" if healthy else "unavailable", "checks": checks, "breakers": breakers},
        status=200 if healthy else 503,
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/health/live", live, allow_head=False)
    app.router.add_get("/health/ready", ready, allow_head=False)
