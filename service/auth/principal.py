"""Who is calling: what the API knows of a caller once its token is verified."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Principal:
    """Who is calling, from verified claims only (never the raw token)."""

    subject: str
    scopes: frozenset[str]
    roles: frozenset[str]
    issuer: str
    # The policy input's `principal` (service/authz/decision.py), built once per token and
    # shared by its requests' inputs: read it, never change it.
    document: dict[str, Any] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        scopes, roles = tuple(sorted(self.scopes)), tuple(sorted(self.roles))
        object.__setattr__(
            self, "document", {"sub": self.subject, "scopes": scopes, "roles": roles}
        )
