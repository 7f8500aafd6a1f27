"""`create_app(settings)`: wiring only. Every long-lived resource is one `cleanup_ctx`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

from aiohttp import web

from service.api import audit, customers, events, health
from service.api.metrics import metrics_middleware, setup_metrics
from service.api.openapi import setup_openapi
from service.api.parsing import parsing_middleware
from service.api.problems import problem_middleware
from service.api.protocol import guard_expect_continue, harden_response
from service.api.ratelimit import add_ratelimit_headers, ratelimit_middleware
from service.api.security import security_middleware
from service.audit.reads import ReadRecorder
from service.auth.jwt import build_token_verifier
from service.authz import build_policy_engine
from service.authz.metered import MeteredPolicyEngine
from service.breaker import Breakers
from service.cep.resolver import build_cep_resolver
from service.customers.lifecycle import RETENTION_ACTOR
from service.customers.model import now
from service.errors import ServiceUnavailable
from service.events.webhooks import Endpoint, Relay, RelayCollector, Signer
from service.http import client_session
from service.ratelimit import build_rate_limiter
from service.settings import Settings, SettingsError
from service.settings.checks import webhook_secrets
from service.storage import open_storage
from service.storage.admin import purge
from service.typedefs import (
    breakers_key,
    cep_resolver_key,
    clock_key,
    http_session_key,
    metrics_key,
    pii_codec_key,
    pipeline_key,
    policy_engine_key,
    rate_limiter_key,
    read_recorder_key,
    relay_key,
    repository_key,
    settings_key,
    token_verifier_key,
    wall_clock_key,
)
from service.validation.pipeline import ValidatorPipeline, load_validators

IDEMPOTENCY_SWEEP_INTERVAL_S = 600
EVENT_SWEEP_INTERVAL_S = 600
EVENT_SWEEP_BATCH = 1000
PURGE_BATCH = 200  # anonymizations per transaction of the retention sweep


async def http_session_ctx(app: web.Application) -> AsyncIterator[None]:
    """One ClientSession for every outgoing call (CEP providers, JWKS, OPA)."""
    session = client_session()
    app[http_session_key] = session
    yield
    await session.close()


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    repository, codec = await open_storage(app[settings_key])
    try:
        app[pii_codec_key] = codec
        app[repository_key] = repository
        yield
    finally:
        await repository.close()


async def audit_ctx(app: web.Application) -> AsyncIterator[None]:
    """The buffer of read entries; closed (so flushed) before the database closes."""
    metrics = app[metrics_key]
    recorder = ReadRecorder(
        app[repository_key].audit,
        app[settings_key].audit.reads,
        written=metrics.audit_entries,
        depth=metrics.audit_buffer_depth,
        flush_latency=metrics.audit_flush_latency,
    )
    app[read_recorder_key] = recorder
    recorder.start()
    yield
    await recorder.close()


@contextlib.asynccontextmanager
async def running_periodically(
    step: Callable[[], Awaitable[object]], interval_s: float
) -> AsyncIterator[None]:
    """Run `step` now and then every `interval_s` while the context is open; a database
    that is down (`ServiceUnavailable`) only skips a round: the next one tries again."""

    async def forever() -> None:
        while True:
            with contextlib.suppress(ServiceUnavailable):
                await step()
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(forever())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def idempotency_sweep_ctx(app: web.Application) -> AsyncIterator[None]:
    """Delete expired Idempotency-Key records now and then (reads ignore them anyway)."""

    async def sweep() -> None:
        await app[repository_key].idempotency.sweep(app[wall_clock_key]())

    async with running_periodically(sweep, IDEMPOTENCY_SWEEP_INTERVAL_S):
        yield


async def events_ctx(app: web.Application) -> AsyncIterator[None]:
    """The webhook relay (one task per endpoint) and the feed's retention sweep."""
    settings = app[settings_key]
    store = app[repository_key].events
    endpoints = [
        Endpoint(
            hook,
            Signer(webhook_secrets(hook, settings.base_dir, os.environ)),
            app[breakers_key].get(f"webhook:{hook.name}"),
        )
        for hook in settings.events.webhooks
    ]
    relay = Relay(
        store,
        endpoints,
        app[http_session_key],
        wall_clock=app[wall_clock_key],
        deliveries=app[metrics_key].webhook_deliveries,
    )
    await relay.start()
    app[relay_key] = relay
    collector = RelayCollector(relay)
    app[metrics_key].registry.register(collector)
    retention = timedelta(days=settings.events.retention_days)

    async def sweep() -> None:  # bounded batches, each its own short transaction
        before = app[wall_clock_key]() - retention
        while await store.sweep(before=before, limit=EVENT_SWEEP_BATCH):
            await asyncio.sleep(0)

    async with running_periodically(sweep, EVENT_SWEEP_INTERVAL_S):
        yield
    await relay.close()
    app[metrics_key].registry.unregister(collector)


async def retention_sweep_ctx(app: web.Application) -> AsyncIterator[None]:
    """Every `retention.sweep_interval_s`, anonymize the closed customers past `purge_after`
    (`db purge` does the same now), a bounded batch per transaction. Safe in every worker at
    once: each anonymization is conditional on the customer still being closed."""

    async def sweep() -> None:
        await purge(app[repository_key], PURGE_BATCH, RETENTION_ACTOR)

    async with running_periodically(sweep, app[settings_key].retention.sweep_interval_s):
        yield


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """Token verifier (JWKS over the shared session) and the policy engine."""
    settings = app[settings_key]
    session = app[http_session_key]
    breakers = app[breakers_key]
    metrics = app[metrics_key]
    app[token_verifier_key] = build_token_verifier(
        settings,
        session,
        clock=app[clock_key],
        breaker=breakers.get("jwks"),
        jwks_refreshes=metrics.jwks_refreshes,
    )
    engine = MeteredPolicyEngine(
        build_policy_engine(settings.authz, session, base_dir=settings.base_dir, breakers=breakers),
        settings.authz.engine,
        metrics.policy_decisions,
        metrics.policy_latency,
        metrics.deferred,
    )
    app[policy_engine_key] = engine
    yield
    await engine.close()


async def cep_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    try:
        resolver = build_cep_resolver(
            settings.cep,
            app[http_session_key],
            offline_base_dir=settings.base_dir,
            breakers=app[breakers_key],
            metrics=app[metrics_key],
        )
    except ValueError as exc:  # a db_path that is not a CEP directory (its contents)
        raise SettingsError(str(exc)) from exc
    app[cep_resolver_key] = resolver
    yield
    await resolver.close()


async def ratelimit_ctx(app: web.Application) -> AsyncIterator[None]:
    limiter = build_rate_limiter(
        app[settings_key].ratelimit, app[breakers_key], clock=app[clock_key]
    )
    app[rate_limiter_key] = limiter
    yield
    await limiter.close()


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], datetime] = now,
) -> web.Application:
    """`clock` (monotonic seconds) drives the circuit breakers and in-process rate limits;
    `wall_clock` (UTC) the expiry of Idempotency-Key records."""
    limited = settings.ratelimit.enabled
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[
            metrics_middleware,
            problem_middleware,
            *([ratelimit_middleware] if limited else []),
            security_middleware,
            parsing_middleware,
        ],
    )
    app[settings_key] = settings
    app[clock_key] = clock
    app[wall_clock_key] = wall_clock
    app[breakers_key] = Breakers(settings.breaker, clock=clock)
    app.on_response_prepare.append(harden_response)
    setup_metrics(app)
    # Built here, not at start-up, so a bad validator entry fails before anything listens.
    app[pipeline_key] = ValidatorPipeline(
        load_validators(settings.validators), rejections=app[metrics_key].validator_rejections
    )
    app.cleanup_ctx.extend(
        [
            http_session_ctx,
            auth_ctx,
            storage_ctx,
            audit_ctx,
            idempotency_sweep_ctx,
            events_ctx,
            retention_sweep_ctx,
            cep_ctx,
        ]
    )
    if limited:
        app.cleanup_ctx.append(ratelimit_ctx)
        app.on_response_prepare.append(add_ratelimit_headers)
    health.setup_routes(app)
    customers.setup_routes(app)
    audit.setup_routes(app)
    events.setup_routes(app)
    setup_openapi(app)
    guard_expect_continue(app)
    return app
