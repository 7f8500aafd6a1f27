"""Every typed application and request key, in one place (as aiohttp-demos' typedefs.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web

from service.audit.reads import ReadRecorder
from service.auth.jwt import TokenVerifier
from service.auth.principal import Principal
from service.authz.decision import Decision, PolicyEngine
from service.breaker import Breakers
from service.cep.resolver import CepResolver
from service.events.webhooks import Relay
from service.metrics import Metrics
from service.ratelimit import RateLimiter, Verdict
from service.settings import Settings
from service.storage.base import CustomerRepository
from service.storage.pii import PiiCodec
from service.validation.pipeline import ValidatorPipeline

settings_key = web.AppKey("settings", Settings)
http_session_key = web.AppKey("http_session", aiohttp.ClientSession)
repository_key = web.AppKey[CustomerRepository]("repository")
pii_codec_key = web.AppKey("pii_codec", PiiCodec)
# the time of day (UTC) for Idempotency-Key expiry (tests pass their own)
wall_clock_key = web.AppKey[Callable[[], datetime]]("wall_clock")
cep_resolver_key = web.AppKey("cep_resolver", CepResolver)
pipeline_key = web.AppKey("pipeline", ValidatorPipeline)
metrics_key = web.AppKey("metrics", Metrics)
token_verifier_key = web.AppKey("token_verifier", TokenVerifier)
policy_engine_key = web.AppKey[PolicyEngine]("policy_engine")
# monotonic seconds for breakers and in-process rate limits (tests pass their own)
clock_key = web.AppKey[Callable[[], float]]("clock")
breakers_key = web.AppKey("breakers", Breakers)
rate_limiter_key = web.AppKey[RateLimiter]("rate_limiter")
relay_key = web.AppKey("relay", Relay)  # the webhook relay (its endpoints, their state)
# readiness: each CEP provider's last probe (monotonic time, the failure or None)
# the buffer of audit read entries (audit.reads)
read_recorder_key = web.AppKey("read_recorder", ReadRecorder)
cep_probes_key = web.AppKey[dict[str, tuple[float, Exception | None]]]("cep_probes")

# per request: what the handler's schemas parsed from the body / query string
request_data_key = web.RequestKey("request_data", dict[str, Any])
# per request: who is calling (verified token) and what the policy decided for this call
principal_key = web.RequestKey("principal", Principal)
decision_key = web.RequestKey("decision", Decision)
# per request: the token checked once (principal or the problem it raised), the bucket's verdict
# the verified principal, or why not (a Problem, or ServiceUnavailable: issuer keys)
authentication_key = web.RequestKey[Principal | Exception]("authentication")
rate_limit_verdict_key = web.RequestKey("rate_limit_verdict", Verdict)
