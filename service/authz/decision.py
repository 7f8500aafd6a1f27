"""The authorization contract: the input document the app sends and the decision it reads.

One input document per request, built from the verified token (never the raw token);
`route` is the template of the route the request matched (the same for every customer: a
rule that reads it rather than `path` lets one decision serve every id, see
service/authz/inputs.py); `resource` is present only when the path names one customer, its
id canonical (the form the storage sees); `query` names the query parameters sent, never
their values (personal data):

    {"method": "GET", "path": ["api", "v1", "customers", "<id>"],
     "route": "/api/v1/customers/{customer_id}",
     "principal": {"sub": "user-1", "scopes": ["customers:read"], "roles": ["support"]},
     "resource": {"kind": "customer", "id": "<id>"},
     "query": []}

The policies (package `customers.authz`) answer the rule `decision` =
{"allow": bool, "reasons": [str], "masked_fields": [str], "visible_statuses": [str]}.
`visible_statuses` (the customer statuses the caller may see) may be missing: then only
`active`. Anything else (undefined, malformed, an engine error) is never an allow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard

from service.auth.principal import Principal
from service.customers.canonical import canonical_customer_id
from service.customers.lifecycle import DEFAULT_VISIBLE
from service.errors import ServiceUnavailable


def policy_input(
    method: str,
    path: str,
    principal: Principal,
    customer_id: str | None = None,
    query: Iterable[str] = (),
    route: str | None = None,
) -> dict[str, Any]:
    """The policy's input document: verified claims only, never the raw token.

    `customer_id` is the path's segment after `customers`; the policy sees it canonical, in
    `resource` and in `path` alike, so `6B09…` and `6b09…` are one customer to it as to the
    storage.
    """
    segments = [segment for segment in path.split("/") if segment]
    document: dict[str, Any] = {
        "method": method,
        "path": segments,
        "route": route,
        "principal": principal.document,
        "query": sorted(set(query)),
    }
    if customer_id is not None:
        # the segment after `customers` (…/customers/{id} and …/customers/{id}/audit alike)
        position = segments.index("customers") + 1 if "customers" in segments else -1
        segments[position] = canonical_customer_id(customer_id)
        document["resource"] = {"kind": "customer", "id": segments[position]}
    return document


class PolicyEngineError(ServiceUnavailable):
    """The policy engine cannot decide now: the request gets 503, never an allow."""

    default_detail = "The authorization policy engine cannot answer now."


@dataclass(frozen=True)
class Decision:
    allow: bool
    reasons: tuple[str, ...]
    masked_fields: frozenset[str]
    visible_statuses: frozenset[str] = DEFAULT_VISIBLE

    @classmethod
    def deny(cls, reason: str) -> Decision:
        return cls(allow=False, reasons=(reason,), masked_fields=frozenset())

    @classmethod
    def from_result(cls, obj: object) -> Decision:
        """Strict reading of a `decision` value: any shape but the documented one is a deny."""
        return parse_decision(obj) or cls.deny("policy returned no valid decision")


def parse_decision(obj: object) -> Decision | None:
    if not isinstance(obj, dict):
        return None  # includes undefined (opa-eval answers the string "<undefined>")
    allow, reasons, masked = obj.get("allow"), obj.get("reasons"), obj.get("masked_fields")
    if not isinstance(allow, bool) or not _is_str_list(reasons) or not _is_str_list(masked):
        return None
    visible = obj.get("visible_statuses", sorted(DEFAULT_VISIBLE))
    if not _is_str_list(visible):
        return None
    return Decision(
        allow=allow is True,
        reasons=tuple(reasons),
        masked_fields=frozenset(masked),
        visible_statuses=frozenset(visible),
    )


def _is_str_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


class PolicyEngine(Protocol):
    async def decide(self, input: Mapping[str, Any]) -> Decision: ...

    async def check(self) -> None:
        """For readiness probes: raise PolicyEngineError when the engine cannot decide."""

    async def close(self) -> None: ...
