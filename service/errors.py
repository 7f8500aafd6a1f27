"""The errors every layer shares, and the one list of problems the API answers.

No aiohttp import here. Two kinds:
- domain errors (`ServiceUnavailable`, `InvalidFields`, and the subclasses domain modules
  declare: `DatabaseUnavailable`, `CepUnavailable`, `PolicyEngineError`...): plain
  exceptions, no HTTP in them, raised anywhere below the API;
- problems (`Problem` and its subclasses, all of them in this module): what the API
  answers (RFC 9457), raised by the HTTP edge itself or made from a domain error by the one
  exception-to-problem table, `service.api.problems.PROBLEM_OF`.
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


class ServiceUnavailable(Exception):
    """A dependency (CEP providers, policy engine, database, token issuer) cannot answer
    now; nothing was stored. Subclasses name the dependency in their default detail; the
    API answers 503 with `Retry-After: retry_after_s`."""

    default_detail = "A dependency cannot answer now; nothing was stored."
    retry_after_s = 5

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)


class InvalidFields(Exception):
    """One or more fields failed: every failing field, not only the first (422)."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__(", ".join(sorted({e.field for e in self.errors})))


# --- the problems: every answer the API gives on purpose ---


class Problem(Exception):
    """Base of every error the API answers on purpose; `code` (optional) is a stable code
    for a problem that is not about one field."""

    slug: str = "about:blank"
    title: str = "Error"
    status: int = 500
    code: str | None = None

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def type(self) -> str:
        return "about:blank" if self.slug == "about:blank" else PROBLEM_BASE + self.slug

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.code is not None:
            body["code"] = self.code
        return body


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


class ClientClosedRequest(Problem):
    """The client hung up before its request arrived whole: nobody reads the answer, and
    it is the client's doing, not a 500 (499 as in nginx)."""

    slug = "client-closed-request"
    title = "Client closed request"
    status = 499


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


class PayloadTooLarge(Problem):
    slug = "payload-too-large"
    title = "Request body too large"
    status = 413


class UnsupportedMediaType(Problem):
    slug = "unsupported-media-type"
    title = "Unsupported media type"
    status = 415


class Unprocessable(Problem):
    """422: the fields that failed, every one (`errors`)."""

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


class IdempotencyKeyReused(Problem):
    slug = "idempotency-key-reused"
    title = "Idempotency key reused"
    status = 422
    code = "idempotency_key_reused"


class IdempotencyKeyExpired(Problem):
    """The kept answer can no longer be opened: the PII key that sealed it was retired."""

    slug = "idempotency-key-expired"
    title = "Idempotency key expired"
    status = 422
    code = "idempotency_key_expired"


class IdempotencyInFlight(Problem):
    slug = "idempotency-in-flight"
    title = "Request in progress"
    status = 409


class IdempotencyKeysExhausted(Problem):
    """A caller holds `MAX_LIVE_KEYS` live Idempotency-Key records: a new key waits until
    some expire (each is kept 24 h), so one token cannot grow the table without bound."""

    slug = "idempotency-keys-exhausted"
    title = "Too many idempotency keys"
    status = 429
    code = "idempotency_keys_exhausted"


class RateLimited(Problem):
    slug = "rate-limited"
    title = "Too many requests"
    status = 429

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


class Unavailable(Problem):
    """503: what a `ServiceUnavailable` answers; says when to retry."""

    slug = "service-unavailable"
    title = "Service unavailable"
    status = 503

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


class InternalError(Problem):
    slug = "internal-error"
    title = "Internal server error"
    status = 500
