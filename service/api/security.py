"""Authentication then authorization, for every route that is not public.

Order in the chain: problem middleware (outermost) > security > parsing > handler. So an
unauthenticated caller learns nothing about the body it sent, and the policy sees the
request before any validator or database call is spent on it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from service.auth.jwt import Principal
from service.errors import Forbidden
from service.typedefs import decision_key, policy_engine_key, principal_key, token_verifier_key

# Open to anyone: probes, API docs, metrics. Everything else is denied unless a policy allows.
PUBLIC_PREFIXES = ("/health/", "/api/docs", "/metrics")


def is_public(path: str) -> bool:
    return path.startswith(PUBLIC_PREFIXES)


def policy_input(request: web.Request, principal: Principal) -> dict[str, Any]:
    """The policy's input document: verified claims only, never the raw token."""
    document: dict[str, Any] = {
        "method": request.method,
        "path": [segment for segment in request.path.split("/") if segment],
        "principal": {
            "sub": principal.subject,
            "scopes": sorted(principal.scopes),
            "roles": sorted(principal.roles),
        },
    }
    if "customer_id" in request.match_info:
        document["resource"] = {"kind": "customer", "id": request.match_info["customer_id"]}
    return document


@web.middleware
async def security_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    # An address with no route (404/405) has nothing to protect: say so plainly.
    if is_public(request.path) or request.match_info.http_exception is not None:
        return await handler(request)  # type: ignore[no-any-return]
    principal = await request.app[token_verifier_key].authenticate(
        request.headers.get("Authorization")
    )
    decision = await request.app[policy_engine_key].decide(policy_input(request, principal))
    if not decision.allow:
        reasons = "; ".join(decision.reasons) or "the policy does not allow this request"
        raise Forbidden(f"Not allowed: {reasons}.")
    request[principal_key] = principal
    request[decision_key] = decision
    return await handler(request)  # type: ignore[no-any-return]
