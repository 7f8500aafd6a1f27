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
from service.settings import AuthzSettings


def build_policy_engine(
    settings: AuthzSettings, session: aiohttp.ClientSession, *, base_dir: Path
) -> PolicyEngine:
    """The engine named by `authz.engine`; raises PolicyLoadError for a bad embedded policy."""
    if settings.engine == "opa":
        return OpaPolicyEngine(session, settings.opa_url, settings.timeout_s)
    return EmbeddedPolicyEngine((base_dir / settings.policies_dir).resolve())
