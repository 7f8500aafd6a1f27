"""Authorization: Rego policies (package `customers.authz`) decide every `/api/v1` call.

- `decision`: the contract (input document, `Decision`, the `PolicyEngine` protocol);
- `rego`: reading policy files as opa-eval needs them, and the child-process check;
- `embedded`: opa-eval in-process with hot reload; `opa`: the OPA sidecar over HTTP;
- `masking`: hiding the fields a decision names.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from service.authz.decision import PolicyEngine
from service.authz.embedded import EmbeddedPolicyEngine
from service.authz.opa import OpaPolicyEngine
from service.breaker import Breakers
from service.settings import AuthzSettings


def build_policy_engine(
    settings: AuthzSettings,
    session: aiohttp.ClientSession,
    *,
    base_dir: Path,
    breakers: Breakers | None = None,
) -> PolicyEngine:
    """The engine named by `authz.engine`; raises PolicyLoadError for a bad embedded policy.

    The OPA sidecar gets the breaker `opa` (the embedded engine runs in-process: no breaker).
    """
    if settings.engine == "opa":
        breaker = breakers.get("opa") if breakers is not None else None
        return OpaPolicyEngine(session, settings.opa_url, settings.timeout_s, breaker=breaker)
    return EmbeddedPolicyEngine((base_dir / settings.policies_dir).resolve())
