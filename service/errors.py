"""Domain exceptions as RFC 9457 problems.

This module has no aiohttp import: domain code (validators, CEP, storage, policy)
raises these, and one middleware (`service.api.problems`) turns them into
`application/problem+json` responses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PROBLEM_BASE = "https://customers-api.example/problems/"


@dataclass(frozen=True)
class FieldError:
    """One failing field: `code` is stable (clients branch on it), `message` is for humans."""

    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class Problem(Exception):
    """Base of every error the API answers on purpose."""

    slug: str = "about:blank"
    title: str = "Error"
    status: int = 500

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def type(self) -> str:
        return "about:blank" if self.slug == "about:blank" else PROBLEM_BASE + self.slug

    def body(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }


class MalformedRequest(Problem):
    slug = "malformed-request"
    title = "Malformed request"
    status = 400


class Unauthenticated(Problem):
    slug = "unauthenticated"
    title = "Authentication required"
    status = 401

    def __init__(self, detail: str, *, error: str | None = "invalid_token") -> None:
        challenge = "Bearer" if error is None else f'Bearer error="{error}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class Forbidden(Problem):
    slug = "forbidden"
    title = "Not allowed"
    status = 403


class NotFound(Problem):
    slug = "not-found"
    title = "Not found"
    status = 404


class RequestTimeout(Problem):
    slug = "request-timeout"
    title = "Request timeout"
    status = 408


class MethodNotAllowed(Problem):
    slug = "method-not-allowed"
    title = "Method not allowed"
    status = 405


class Conflict(Problem):
    """409 with a stable `code` (the customer's status does not allow the request)."""

    title = "Conflict"
    status = 409

    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail)
        self.code = code
        self.slug = code.replace("_", "-")

    def body(self) -> dict[str, Any]:
        return {**super().body(), "code": self.code}


class PayloadTooLarge(Problem):
    slug = "payload-too-large"
    title = "Request body too large"
    status = 413


class UnsupportedMediaType(Problem):
    slug = "unsupported-media-type"
    title = "Unsupported media type"
    status = 415


class InvalidFields(Problem):
    """422: one or more fields failed; lists every failing field, not only the first."""

    slug = "invalid-fields"
    title = "Invalid fields"
    status = 422

    def __init__(self, errors: Sequence[FieldError], detail: str | None = None) -> None:
        fields = ", ".join(sorted({e.field for e in errors}))
        super().__init__(detail or f"These fields are not valid: {fields}.")
        self.errors = list(errors)

    def body(self) -> dict[str, Any]:
        return {**super().body(), "errors": [e.as_dict() for e in self.errors]}


class CursorGone(Problem):
    """410: an event cursor from before what the retention sweep deleted."""

    slug = "cursor-expired"
    title = "Cursor expired"
    status = 410
    code = "cursor_expired"

    def body(self) -> dict[str, Any]:
        return {**super().body(), "code": self.code}


class ServiceUnavailable(Problem):
    """503: a dependency (CEP providers, policy engine, database) cannot answer now."""

    slug = "service-unavailable"
    title = "Service unavailable"
    status = 503
    # Subclasses name the dependency in their default detail; every 503 says when to retry.
    default_detail = "A dependency cannot answer now; nothing was stored."
    retry_after_s = 5

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            detail or self.default_detail, headers={"Retry-After": str(self.retry_after_s)}
        )


class InternalError(Problem):
    slug = "internal-error"
    title = "Internal server error"
    status = 500
