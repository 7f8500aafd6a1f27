"""HTTP-level hardening that sits below the application: what aiohttp answers and logs
itself (malformed requests, idle connections) and the headers of every response.

- `ServiceRunner` serves the app with `ServiceRequestHandler`, whose protocol errors (header
  over 8190 bytes, bad request line, NUL in a header...) answer problem+json without echoing
  the input, and log one WARNING line without the offending bytes.
- `server_options`: `keepalive_timeout` closes idle connections, and since aiohttp arms it
  when a connection opens and only re-arms it after a response, it also bounds how long a
  client may take to send its request headers (slowloris).
- `guard_expect_continue`: a request with `Expect: 100-continue` whose Content-Length is
  over the limit gets its 413 before `100 Continue` (aiohttp's default says "continue" to
  any size and refuses the body only once it arrives).
- `harden_response` (on_response_prepare): `Server` without versions, an `X-Request-ID`, and
  `Connection: close` after a body aiohttp could not decode.
"""

from __future__ import annotations

import logging
import os
import re
from http import HTTPStatus
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_urldispatcher import ResourceRoute

from service.api.problems import problem_response
from service.errors import PayloadTooLarge, Problem
from service.settings import Settings

log = logging.getLogger(__name__)

SERVER_NAME = "customers-api"
REQUEST_ID_HEADER = "X-Request-ID"
# A client's request id is echoed and logged only when it is this tame; else one is made.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Generated ids are hex with letters for digits (g-p): the log masking, which hides runs of
# 8+ digits (CPF, phone), would otherwise mangle many of them (and the access line skips
# masking the ids the server made, tests/test_logs.py).
_NO_DIGITS = bytes.maketrans(b"0123456789", b"ghijklmnop")  # bytes: a C table, not a dict
_REQUEST_ID_KEY = web.RequestKey("request_id", str)


class _RequestIds:
    """32 letters: a random prefix per process (80 bits, drawn again in a forked child) and
    a 48-bit counter, so unique without a system call per request (`os.urandom` costs
    ~10 µs here)."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(10).hex().encode().translate(_NO_DIGITS).decode()
        self._count = 0

    def next(self) -> str:
        self._count += 1
        counter = b"%012x" % (self._count & 0xFFFF_FFFF_FFFF)
        return self._prefix + counter.translate(_NO_DIGITS).decode()


_request_ids = _RequestIds()


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for the runner (and so for every connection's RequestHandler)."""
    return {"keepalive_timeout": settings.server.idle_timeout_s}


def new_request_id() -> str:
    return _request_ids.next()


def request_id_of(request: web.BaseRequest) -> str:
    """The client's id when tame, else a generated one; the same for the whole request (the
    audit trail records the id the response echoes)."""
    known: str | None = request.get(_REQUEST_ID_KEY)
    if known is None:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        tame = _REQUEST_ID.fullmatch(given)
        known = given if tame else new_request_id()
        request[_REQUEST_ID_KEY] = known
    return known


async def harden_response(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[hdrs.SERVER] = SERVER_NAME
    response.headers[REQUEST_ID_HEADER] = request_id_of(request)
    if request.content.exception() is not None:
        # The body stream broke (e.g. Content-Encoding gzip with garbage): the bytes after it
        # cannot be trusted to start a request, so close; marking it read skips aiohttp's
        # lingering read, which would raise the same error again and log it as unhandled.
        response.force_close()
        response.headers[hdrs.CONNECTION] = "close"  # this hook runs after aiohttp set it
        request.content.feed_eof()


async def _expect_within_limit(request: web.Request) -> web.StreamResponse | None:
    """The route's `Expect` handler: 413 for a body announced over `client_max_size`, 417
    for an expectation other than 100-continue, else `100 Continue` (aiohttp's behaviour)."""
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        problem = Problem("Only `Expect: 100-continue` is understood.")
        problem.status, problem.title = 417, HTTPStatus(417).phrase
        response = problem_response(problem)
    elif (request.content_length or 0) > request.client_max_size:
        response = problem_response(
            PayloadTooLarge(f"The body may be at most {request.client_max_size} bytes.")
        )
    else:
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None
    response.force_close()  # the client holds its body back: nothing else can follow
    return response


def guard_expect_continue(app: web.Application) -> None:
    """Give every route added so far the size-aware `Expect` handler (call it last)."""
    for route in app.router.routes():
        if isinstance(route, ResourceRoute):
            route._expect_handler = _expect_within_limit


class ServiceRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's, minus the echo: problem+json, and a log line naming only the kind."""
        kind = type(exc).__name__ if exc is not None else "no exception"
        if status >= 500:
            log.error("HTTP %d outside the application (%s)", status, kind, exc_info=exc)
        else:
            log.warning("refused a malformed HTTP request (%s)", kind)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already started; cannot send the error")
        http_status = HTTPStatus(status)
        detail = http_status.description
        if isinstance(exc, LineTooLong):
            detail = "A request line or header is too long."
        elif status < 500:
            detail = "The request is not valid HTTP."
        problem = Problem(detail)
        problem.status, problem.title = status, http_status.phrase
        response = problem_response(problem)
        response.headers[hdrs.SERVER] = SERVER_NAME
        response.force_close()
        return response


class _ServiceServer(web.Server):
    def __call__(self) -> RequestHandler:
        return ServiceRequestHandler(self, loop=self._loop, **self._kwargs)


class ServiceRunner(web.AppRunner):
    """`web.AppRunner` whose connections are `ServiceRequestHandler`s."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app builds a plain Server (Application._make_handler); same state, our factory.
        server.__class__ = _ServiceServer
        return server
