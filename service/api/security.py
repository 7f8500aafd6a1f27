"""Authentication then authorization, for every route that is not public.

Order in the chain (service/app.py): metrics (outermost) > problems > ratelimit > security >
parsing > handler. So an unauthenticated caller learns nothing about the body it sent, and
the policy sees the request before any validator or database call is spent on it.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from service.auth.principal import Principal
from service.authz.decision import policy_input
from service.customers.canonical import canonical_customer_id
from service.errors import Forbidden, Problem, ServiceUnavailable, Unauthenticated
from service.typedefs import (
    authentication_key,
    decision_key,
    policy_engine_key,
    principal_key,
    token_verifier_key,
)

# Open to anyone: probes, API docs, metrics. Everything else is denied unless a policy allows.
PUBLIC_PREFIXES = ("/health/", "/api/docs", "/metrics")


def is_public(path: str) -> bool:
    return path.startswith(PUBLIC_PREFIXES)


def _authorization_header(request: web.Request) -> str | None:
    values = request.headers.getall(hdrs.AUTHORIZATION, [])
    if len(values) > 1:  # which one would count is a guess: refuse, never pick one
        raise Unauthenticated("Send one Authorization header.", error="invalid_request")
    return values[0] if values else None


async def authenticate(request: web.Request) -> Principal:
    """The request's verified principal, checked once per request (the rate limiter asks first)."""
    outcome = request.get(authentication_key)
    if outcome is None:
        try:
            outcome = await request.app[token_verifier_key].authenticate(
                _authorization_header(request)
            )
        except (Problem, ServiceUnavailable) as failure:  # 401, or 503 (issuer keys)
            outcome = failure
        request[authentication_key] = outcome
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@web.middleware
async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # An address with no route (404/405) has nothing to protect: say so plainly.
    if is_public(request.path) or request.match_info.http_exception is not None:
        return await handler(request)
    principal = await authenticate(request)
    customer_id = request.match_info.get("customer_id")
    if customer_id is not None:  # the handlers (and so the storage) see the canonical id too
        customer_id = request.match_info["customer_id"] = canonical_customer_id(customer_id)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else None
    document = policy_input(
        request.method, request.path, principal, customer_id, request.query, route=route
    )
    decision = await request.app[policy_engine_key].decide(document)
    if not decision.allow:
        reasons = "; ".join(decision.reasons) or "the policy does not allow this request"
        raise Forbidden(f"Not allowed: {reasons}.")
    request[principal_key] = principal
    request[decision_key] = decision
    return await handler(request)
