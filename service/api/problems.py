"""Every error leaves as `application/problem+json` (RFC 9457).

The problem middleware sits just inside the metrics middleware (so metrics count the
status the client got). Handlers and domain code raise; only this module formats: a
`Problem` as it is, a domain error through the one table `PROBLEM_OF` (litestar's
`exception_to_problem_detail_map`), and anything unexpected as a generic 500 whose
traceback goes to the log, never the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from service.api.render import json_response
from service.customers.errors import CustomerNotFound, DuplicateCustomer, InvalidCursor
from service.customers.lifecycle import LifecycleError
from service.errors import (
    Conflict,
    CursorGone,
    InternalError,
    InvalidFields,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Problem,
    ServiceUnavailable,
    Unavailable,
    Unprocessable,
)
from service.events.model import CursorExpired

log = logging.getLogger(__name__)
PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_response(problem: Problem) -> web.Response:
    return json_response(
        problem.body(),
        status=problem.status,
        headers=problem.headers,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def _from_http_exception(exc: web.HTTPException) -> Problem:
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("There is nothing at this address.")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        problem: Problem = MethodNotAllowed(f"{exc.method} is not allowed here.")
        problem.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return problem
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(exc.text or "The request body is too large.")
    generic = Problem(exc.reason)  # RFC 9457 "about:blank": the status says it all
    generic.status, generic.title = exc.status, exc.reason
    return generic


def _unavailable(exc: ServiceUnavailable) -> Problem:
    return Unavailable(exc.detail, retry_after_s=exc.retry_after_s)


# Domain error -> the problem it answers. The first class of the exception's MRO found here
# decides, so a subclass (`DatabaseUnavailable`) answers as its base unless listed itself.
PROBLEM_OF: dict[type[Exception], Callable[[Any], Problem]] = {
    InvalidFields: lambda exc: Unprocessable(exc.errors),
    DuplicateCustomer: lambda exc: Unprocessable(exc.field_errors()),
    InvalidCursor: lambda exc: Unprocessable([exc.field_error()]),
    CustomerNotFound: lambda exc: NotFound("No customer has this id."),
    LifecycleError: lambda exc: Conflict(exc.detail, code=exc.code),
    CursorExpired: lambda exc: CursorGone(
        "Events after this cursor are older than the retention period and were deleted; "
        "start again without `after` (and reconcile through the customers API)."
    ),
    ServiceUnavailable: _unavailable,
    web.HTTPException: _from_http_exception,
}


def to_problem(exc: Exception) -> Problem | None:
    """The problem `exc` answers, or None for an exception nobody planned (a bug)."""
    if isinstance(exc, Problem):
        return exc
    for cls in type(exc).__mro__:
        if cls in PROBLEM_OF:
            return PROBLEM_OF[cls](exc)
    return None


def error_response(request: web.Request, exc: Exception) -> web.Response:
    """The problem+json answer to `exc` (re-raised when it is an HTTP redirect or success).
    Also used where an answer must be known before it leaves (Idempotency-Key)."""
    if isinstance(exc, web.HTTPException) and exc.status < 400:
        raise exc
    problem = to_problem(exc)
    if problem is not None:
        return problem_response(problem)
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return problem_response(InternalError("An unexpected error occurred; it was logged."))


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        return error_response(request, exc)
