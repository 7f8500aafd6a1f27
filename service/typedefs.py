"""Every typed application and request key, in one place (as aiohttp-demos' typedefs.py)."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from service.auth.jwt import Principal, TokenVerifier
from service.authz.decision import Decision, PolicyEngine
from service.cep.resolver import CepResolver
from service.metrics import Metrics
from service.settings import Settings
from service.storage.base import CustomerRepository
from service.validation.pipeline import ValidatorPipeline

settings_key = web.AppKey("settings", Settings)
http_session_key = web.AppKey("http_session", aiohttp.ClientSession)
repository_key = web.AppKey[CustomerRepository]("repository")
cep_resolver_key = web.AppKey("cep_resolver", CepResolver)
pipeline_key = web.AppKey("pipeline", ValidatorPipeline)
metrics_key = web.AppKey("metrics", Metrics)
token_verifier_key = web.AppKey("token_verifier", TokenVerifier)
policy_engine_key = web.AppKey[PolicyEngine]("policy_engine")

# per request: what the handler's schemas parsed from the body / query string
request_data_key = web.RequestKey("request_data", dict[str, Any])
# per request: who is calling (verified token) and what the policy decided for this call
principal_key = web.RequestKey("principal", Principal)
decision_key = web.RequestKey("decision", Decision)
