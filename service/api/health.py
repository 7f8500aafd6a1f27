"""Liveness and readiness probes: public, never behind auth.

`/health/ready` probes every dependency at once, each within `PROBE_TIMEOUT_S`, so it
answers in about that time even when one hangs:

    {"status": "ok" | "degraded" | "unavailable",
     "checks": {"storage": {"state": "ok", "latency_ms": 0.4}, ...},
     "breakers": {"cep:viacep": "closed", ...}}

A check is `ok`, `degraded` (serving, with less: JWKS keys cached while the issuer does not
answer) or `down`. The answer is `unavailable` (503) when the API cannot serve: storage,
policy engine, JWKS without any key, or every CEP provider down. Anything else not `ok`
(one CEP provider, the CEP cache, the Redis rate-limit store, an open breaker) is
`degraded` (200): the fallbacks serve, and a load balancer should keep sending traffic.
The checks run in a snapshot, never per probe: a probe answers the last snapshot, starts a
refresh in the background when it is `REFRESH_EVERY_S` old (one at a time, whoever asks),
and waits for that refresh only when the snapshot is older than `MAX_AGE_S` (or there is
none yet). However many probes arrive, every dependency (JWKS, OPA, MongoDB, Redis, CEP)
sees at most one check per `REFRESH_EVERY_S`. Breaker states are read live (no call).
The probes bypass the circuit breakers (they neither open nor close them); a provider
behind an open breaker is reported `down` without a call. `detail` names the kind of
failure only (never a message, which may hold a host or a URL: the endpoint is public).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from service.api.openapi import json_content, operation
from service.api.render import json_response
from service.api.schemas import LiveSchema, ReadySchema
from service.breaker import BreakerState, CircuitBreaker
from service.cep.base import CepProvider
from service.typedefs import (
    breakers_key,
    cep_probes_key,
    cep_resolver_key,
    clock_key,
    policy_engine_key,
    rate_limiter_key,
    relay_key,
    repository_key,
    settings_key,
    token_verifier_key,
)

PROBE_TIMEOUT_S = 0.5
# A snapshot this old is refreshed in the background; one older than MAX_AGE_S is not answered.
REFRESH_EVERY_S = 2.0
MAX_AGE_S = 5.0
# A CEP every provider knows (Praça da Sé); any definite answer shows the provider works.
PROBE_CEP = "01001000"
# The endpoint is public: each call must not become a call to ViaCEP (an amplifier for
# anyone, and a load on a free service), so a provider's probe outcome is kept this long.
PROVIDER_PROBE_EVERY_S = 30.0
Probe = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Check:
    name: str
    probe: Probe
    critical: bool  # down means the API cannot serve (503)
    # Asked only when the probe fails: is the dependency still serving from what it kept?
    still_serving: Callable[[], bool] | None = None


@dataclass(frozen=True)
class Result:
    state: str
    latency_ms: float
    detail: str | None = None

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"state": self.state, "latency_ms": self.latency_ms}
        if self.detail is not None:
            body["detail"] = self.detail
        return body


async def run_check(check: Check, timeout_s: float = PROBE_TIMEOUT_S) -> Result:
    started = time.perf_counter()
    detail = None
    try:
        async with asyncio.timeout(timeout_s):
            await check.probe()
    except TimeoutError:
        detail = f"no answer within {timeout_s:g}s"
    except Exception as exc:  # any failure is this dependency's state, not a 500
        detail = type(exc).__name__
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    if detail is None:
        return Result("ok", latency_ms)
    serving = check.still_serving is not None and check.still_serving()
    return Result("degraded" if serving else "down", latency_ms, detail)


class BreakerOpen(Exception):
    """The provider's breaker is open: it is not called."""


def provider_probe(provider: CepProvider, breaker: CircuitBreaker, app: web.Application) -> Probe:
    """One lookup of PROBE_CEP, at most every PROVIDER_PROBE_EVERY_S; in between, the kept
    outcome (a failure is raised again)."""
    kept = app[cep_probes_key]
    clock = app[clock_key]

    async def lookup() -> None:
        if breaker.state is BreakerState.OPEN:
            raise BreakerOpen()
        last = kept.get(provider.name)
        if last is None or clock() - last[0] >= PROVIDER_PROBE_EVERY_S:
            try:
                await provider.lookup(PROBE_CEP)
            except asyncio.CancelledError:  # the probe's timeout: kept as no answer
                kept[provider.name] = (clock(), TimeoutError())
                raise
            except Exception as exc:
                kept[provider.name] = (clock(), exc)
                raise
            kept[provider.name] = last = (clock(), None)
        if last[1] is not None:
            raise last[1].with_traceback(None)  # kept, not re-raised with a growing traceback

    return lookup


def readiness_checks(app: web.Application) -> list[Check]:
    """Every dependency of `app`, as configured."""
    checks = [
        Check("storage", app[repository_key].ping, critical=True),
        # The last write's outcome, no call: a full disk or read-only file still answers reads.
        Check("storage_writes", app[repository_key].health.check_writes, critical=False),
        Check("policy_engine", app[policy_engine_key].check, critical=True),
    ]
    jwks = app[token_verifier_key].jwks
    checks.append(
        Check("jwks", jwks.check, critical=True, still_serving=lambda: jwks.key_count > 0)
    )
    resolver = app[cep_resolver_key]
    breakers = app[breakers_key]
    for provider in resolver.providers:
        name = f"cep:{provider.name}"
        probe = provider_probe(provider, breakers.get(name), app)
        checks.append(Check(name, probe, critical=False))
    checks.append(Check("cep_cache", resolver.check_cache, critical=False))
    ratelimit = app[settings_key].ratelimit
    if ratelimit.enabled and not ratelimit.url.startswith("memory://"):
        from service.ratelimit.redis_limiter import RedisRateLimiter

        limiter = app[rate_limiter_key]
        if isinstance(limiter, RedisRateLimiter):
            checks.append(Check("ratelimit_store", limiter.ping, critical=False))
    return checks


def overall_status(snapshot: Snapshot, breakers: dict[str, str]) -> str:
    by_name = snapshot.checks
    providers = [name for name in by_name if name.startswith("cep:")]
    if any(by_name[name].state == "down" for name in snapshot.critical) or (
        providers and all(by_name[name].state == "down" for name in providers)
    ):
        return "unavailable"
    if any(r.state != "ok" for r in by_name.values()) or "open" in breakers.values():
        return "degraded"
    return "ok"


@dataclass(frozen=True)
class Snapshot:
    taken_at: float
    checks: dict[str, Result]
    critical: frozenset[str]


class Readiness:
    """The snapshot of every check, refreshed by at most one task at a time."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._clock = app[clock_key]
        self._snapshot: Snapshot | None = None
        self._refreshing: asyncio.Task[None] | None = None

    async def snapshot(self) -> Snapshot:
        snapshot = self._snapshot
        age = None if snapshot is None else self._clock() - snapshot.taken_at
        if age is None or age >= REFRESH_EVERY_S:
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.create_task(self._refresh())
            if age is None or age >= MAX_AGE_S:
                await asyncio.shield(self._refreshing)  # a probe that leaves does not cancel it
        assert self._snapshot is not None
        return self._snapshot

    async def _refresh(self) -> None:
        checks = readiness_checks(self._app)
        results = await asyncio.gather(*(run_check(check) for check in checks))
        self._snapshot = Snapshot(
            self._clock(),
            {c.name: r for c, r in zip(checks, results, strict=True)},
            frozenset(c.name for c in checks if c.critical),
        )

    async def close(self) -> None:
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()
            await asyncio.gather(self._refreshing, return_exceptions=True)


readiness_key = web.AppKey("readiness", Readiness)


@operation(
    "live",
    tag="health",
    summary="The process is up",
    responses={200: json_content(LiveSchema, "Up")},
    authenticated=False,
)
async def live(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@operation(
    "ready",
    tag="health",
    summary="Every dependency, its state and latency (503 when the API cannot serve)",
    responses={
        200: json_content(ReadySchema, "Serving (`ok`, or `degraded` on a fallback)"),
        503: json_content(ReadySchema, "A dependency the API cannot serve without is down"),
    },
    authenticated=False,
)
async def ready(request: web.Request) -> web.Response:
    snapshot = await request.app[readiness_key].snapshot()
    breakers = request.app[breakers_key].states()
    status = overall_status(snapshot, breakers)
    relay = request.app[relay_key]
    return json_response(
        {
            "status": status,
            "checks": {name: result.as_dict() for name, result in snapshot.checks.items()},
            "breakers": breakers,
            "webhooks": {
                name: {
                    "pending": endpoint.stats.pending,
                    "dead_letters": endpoint.stats.dead,
                    "lag_s": round(relay.lag_s(endpoint), 3),
                }
                for name, endpoint in relay.endpoints.items()
            },
        },
        status=503 if status == "unavailable" else 200,
    )


def setup_routes(app: web.Application) -> None:
    app[cep_probes_key] = {}
    app.cleanup_ctx.append(_readiness_ctx)
    app.router.add_get("/health/live", live, allow_head=False)
    app.router.add_get("/health/ready", ready, allow_head=False)


async def _readiness_ctx(app: web.Application) -> AsyncIterator[None]:
    app[readiness_key] = readiness = Readiness(app)
    yield
    await readiness.close()
