"""Who is calling: what the API knows of a caller once its token is verified."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """Who is calling, from verified claims only (never the raw token)."""

    subject: str
    scopes: frozenset[str]
    roles: frozenset[str]
    issuer: str
