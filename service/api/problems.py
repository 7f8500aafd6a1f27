"""Every error leaves as `application/problem+json` (RFC 9457).

The problem middleware sits just inside the metrics middleware (so metrics count the
status the client got). Handlers and domain code raise; only this module formats: a
`Problem` as it is, the customer domain's errors through `_from_customer_error`, aiohttp's
own HTTP exceptions through `_from_http_exception`, and
anything unexpected as a generic 500 whose traceback goes to the log, never the client.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from service.customers.errors import (
    CustomerError,
    CustomerNotFound,
    DuplicateCustomer,
    InvalidCursor,
)
from service.customers.lifecycle import LifecycleError
from service.errors import (
    Conflict,
    CursorGone,
    InternalError,
    InvalidFields,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Problem,
)
from service.events.model import CursorExpired

log = logging.getLogger(__name__)
PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_response(problem: Problem) -> web.Response:
    return web.Response(
        text=json.dumps(problem.body(), ensure_ascii=False),
        status=problem.status,
        content_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
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


def _from_customer_error(exc: CustomerError) -> Problem:
    if isinstance(exc, DuplicateCustomer):
        return InvalidFields(exc.field_errors())
    if isinstance(exc, CustomerNotFound):
        return NotFound("No customer has this id.")
    if isinstance(exc, InvalidCursor):
        return MalformedRequest("The `cursor` is not one this API handed out.")
    if isinstance(exc, LifecycleError):
        return Conflict(exc.detail, code=exc.code)
    if isinstance(exc, CursorExpired):
        return CursorGone(
            "Events after this cursor are older than the retention period and were deleted; "
            "start again without `after` (and reconcile through the customers API)."
        )
    raise TypeError(f"no problem is mapped for {type(exc).__name__}") from exc


def error_response(request: web.Request, exc: Exception) -> web.Response:
    """The problem+json answer to `exc` (re-raised when it is an HTTP redirect or success).
    Also used where an answer must be known before it leaves (Idempotency-Key)."""
    if isinstance(exc, Problem):
        return problem_response(exc)
    if isinstance(exc, CustomerError):
        return problem_response(_from_customer_error(exc))
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return problem_response(_from_http_exception(exc))
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return problem_response(InternalError("An unexpected error occurred; it was logged."))


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        return error_response(request, exc)
