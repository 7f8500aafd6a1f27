"""Policy inputs and the policy files, for the policy engine tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

POLICIES_DIR = Path(__file__).resolve().parents[2] / "policies"
ITEM = ["api", "v1", "customers", "c-1"]
COLLECTION = ["api", "v1", "customers"]


def route_of(path: list[str]) -> str | None:
    """The route template the app matches for `path` (None: no route serves it)."""
    if path == COLLECTION:
        return "/api/v1/customers"
    if len(path) == 4 and path[:3] == COLLECTION:
        return "/api/v1/customers/{customer_id}"
    if len(path) == 5 and path[:3] == COLLECTION:
        return "/api/v1/customers/{customer_id}/" + path[4]
    if path in (["api", "v1", "audit"], ["api", "v1", "events"]):
        return "/api/v1/" + path[2]
    return None


def request(method: str, path: list[str], scopes: list[str], roles: tuple[str, ...] = ()) -> Any:
    principal = {"sub": "user-1", "scopes": scopes, "roles": list(roles)}
    input_: dict[str, Any] = {"method": method, "path": path, "principal": principal}
    input_["route"] = route_of(path)
    if len(path) == 4:
        input_["resource"] = {"kind": "customer", "id": path[3]}
    return input_


def policy_file(policies: Path) -> Path:
    return policies / "customers" / "authz" / "policy.rego"


def data_file(policies: Path) -> Path:
    return policies / "customers" / "authz" / "data.json"
