"""Authentication then authorization, for every route that is not public.

Order in the chain: problem middleware (outermost) > security > parsing > handler. So an
unauthenticated caller learns nothing about the body it sent, and the policy sees the
request before any validator or database call is spent on it.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from service.authz.decision import policy_input
from service.errors import Forbidden
from service.typedefs import decision_key, policy_engine_key, principal_key, token_verifier_key

# Open to anyone: probes, API docs, metrics. Everything else is denied unless a policy allows.
PUBLIC_PREFIXES = ("/health/", "/api/docs", "/metrics")


def is_public(path: str) -> bool:
    return path.startswith(PUBLIC_PREFIXES)


@web.middleware
async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # An address with no route (404/405) has nothing to protect: say so plainly.
    if is_public(request.path) or request.match_info.http_exception is not None:
        return await handler(request)
    principal = await request.app[token_verifier_key].authenticate(
        request.headers.get("Authorization")
    )
    document = policy_input(
        request.method, request.path, principal, request.match_info.get("customer_id")
    )
    decision = await request.app[policy_engine_key].decide(document)
    if not decision.allow:
        reasons = "; ".join(decision.reasons) or "the policy does not allow this request"
        raise Forbidden(f"Not allowed: {reasons}.")
    request[principal_key] = principal
    request[decision_key] = decision
    return await handler(request)
