"""A real server on 127.0.0.1 (the production runner), raw sockets for what no HTTP client
sends, and every log line of the session captured: protocol errors answer problem+json
without echoing input, idle and slow connections are closed, and no log line holds a token,
a CPF, a phone, an email or a raw control character."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from service.api.access_log import AccessLogger
from service.api.protocol import ServiceRunner, server_options
from service.app import create_app
from service.auth.local_issuer import issue_local_token
from service.logs import JsonFormatter
from service.settings import Settings
from service.typedefs import metrics_key

CPF, CPF_MASKED = "52998224725", "529.982.247-25"
PHONE, PHONE_E164 = "(11) 91234-5678", "5511912345678"
EMAIL = "joao.hostile@example.com"
SECRETS_BASE = [CPF, CPF_MASKED, PHONE_E164, "91234-5678", EMAIL, "joao.hostile"]


class Server:
    def __init__(self, runner: ServiceRunner, port: int, settings: Settings) -> None:
        self.runner, self.port, self.settings = runner, port, settings
        self.token = issue_local_token(
            settings, "tester", ["customers:read", "customers:write"], [], 600
        )

    async def exchange(self, data: bytes, timeout: float = 5) -> bytes:
        """Send raw bytes, read until the server closes (or `timeout`)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(data)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(1 << 20), timeout)
        finally:
            writer.close()


@pytest.fixture
def log_capture() -> Any:
    """Every record (raw) and every line as the production formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    records: list[logging.LogRecord] = []
    recorder = logging.Handler()
    recorder.emit = records.append  # type: ignore[method-assign,assignment]
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    root.addHandler(recorder)
    yield records, stream
    root.removeHandler(handler)
    root.removeHandler(recorder)
    root.setLevel(old_level)


@pytest.fixture
async def server(make_settings: Callable[..., Settings], log_capture: Any) -> AsyncIterator[Server]:
    settings = make_settings({"server": {"idle_timeout_s": 1.0}})
    runner = ServiceRunner(
        create_app(settings), access_log_class=AccessLogger, **server_options(settings)
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Server(runner, port, settings)
    await runner.cleanup()


def head(response: bytes) -> tuple[str, dict[str, str], bytes]:
    header_block, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = header_block.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)
    }
    return status_line, headers, body


PROTOCOL_GARBAGE = [
    pytest.param(
        b"GET /api/v1/customers HTTP/1.1\r\nHost: x\r\nX-Big: " + b"A" * 9000 + b"\r\n\r\n",
        id="header-9000",
    ),
    pytest.param(b"GET /" + b"A" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", id="request-line-9000"),
    pytest.param(b"GARBAGE\r\n\r\n", id="bad-request-line"),
    pytest.param(b"GET /api/v1/customers HTTP/9.9\r\nHost: x\r\n\r\n", id="bad-version"),
    pytest.param(b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n", id="nul-in-method"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", id="nul-in-header"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", id="space-in-header-name"),
    pytest.param(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40, id="tls-hello"),
    pytest.param(
        b"POST /api/v1/customers HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        id="cl-and-te",
    ),
    pytest.param(
        b"POST /api/v1/customers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nA\r\n0\r\n\r\n",
        id="bad-chunk-size",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\r\n\r\n", id="token-stray-cr"
    ),
    pytest.param(
        b"GET /api/v1/customers?cpf=529.982.247-25&email=jo\xc3\xa3o.hostile@example.com HTTP/1.1\r\nHost: x\r\nX: \x01\r\n\r\n",
        id="pii-query-bad-header",
    ),
]


@pytest.mark.parametrize("raw", PROTOCOL_GARBAGE)
async def test_protocol_errors_answer_problem_json_without_echo(server, log_capture, raw):
    raw = raw.replace(b"{token}", server.token.encode())
    response = await server.exchange(raw)
    status_line, headers, body = head(response)
    assert status_line.split(" ")[1].startswith("4"), status_line
    assert headers["content-type"].startswith("application/problem+json")
    assert headers["server"] == "customers-api"
    problem = json.loads(body)
    assert problem["status"] == int(status_line.split(" ")[1])
    for secret in [b"AAAAAAAA", server.token.encode(), b"529.982", b"hostile", b"\x00", b"\x01"]:
        assert secret not in response
    records, _ = log_capture
    warnings = [r for r in records if r.levelno >= logging.WARNING]
    assert [r.levelname for r in warnings] == ["WARNING"]
    assert warnings[0].exc_info is None


async def test_non_ascii_byte_in_bearer_is_401(server):
    response = await server.exchange(
        b"GET /api/v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xe9\r\nConnection: close\r\n\r\n"
    )
    status_line, headers, body = head(response)
    assert " 401 " in status_line
    assert headers["content-type"].startswith("application/problem+json")
    assert headers["www-authenticate"].startswith("Bearer")


async def test_server_header_names_no_version(server):
    response = await server.exchange(
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    _, headers, _ = head(response)
    assert headers["server"] == "customers-api"


@pytest.mark.parametrize("given", ["abc;def", "a" * 129, "a b", "x\u00e9", "{}", "../x"])
async def test_untame_request_ids_are_replaced(server, given):
    raw = f"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Request-ID: {given}\r\nConnection: close\r\n\r\n"
    _, headers, _ = head(await server.exchange(raw.encode("utf-8")))
    assert headers["x-request-id"] != given and len(headers["x-request-id"]) == 32


async def test_tame_request_id_is_echoed(server):
    raw = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Request-ID: req-42.a:b\r\nConnection: close\r\n\r\n"
    _, headers, _ = head(await server.exchange(raw))
    assert headers["x-request-id"] == "req-42.a:b"


async def test_idle_and_slow_connections_are_closed(server):
    """300 connections: idle, half-sent headers, and a trickle of header bytes; all closed
    by the server within a few idle timeouts (1 s here)."""
    # Opened one after the other, so the server accepts each (a burst would overflow the
    # listen backlog, and the kernel would hold the idle ones back, unseen by the server).
    connections = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(300)]

    async def hold(kind: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            if kind == 1:
                writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 8
            while loop.time() < deadline:
                if kind == 2:
                    writer.write(b"X-Slow: a\r\n")
                try:
                    if await asyncio.wait_for(reader.read(1024), 0.2) == b"":
                        return True
                except TimeoutError:
                    continue
            return False
        except ConnectionError:
            return True
        finally:
            writer.close()

    closed = await asyncio.gather(
        *(hold(i % 3, reader, writer) for i, (reader, writer) in enumerate(connections))
    )
    assert [i % 3 for i, ok in enumerate(closed) if not ok] == []
    assert server.runner.server is not None
    for _ in range(50):
        if not server.runner.server.connections:
            break
        await asyncio.sleep(0.05)
    assert server.runner.server.connections == []


HOSTILE_PATHS = [
    "/api/v1/customers/%0A2026-01-01%20INFO%20forged",
    "/api/v1/customers/%1B%5B31mred%1B%5B0m",
    "/api/v1/customers/%E2%80%AEreversed",
    f"/api/v1/customers/{CPF}",
    f"/{CPF_MASKED}/{EMAIL}",
    f"/api/v1/customers?cpf={CPF_MASKED}&email={EMAIL}&phone={PHONE_E164}",
]


async def test_hostile_session_leaves_no_secret_and_no_control_character_in_logs(
    server, log_capture
):
    token = server.token
    auth = f"Authorization: Bearer {token}\r\n"
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode()
        for path in HOSTILE_PATHS
    ]
    body = json.dumps(
        {
            "name": "Jo\u00e3o\x1b[31m",
            "email": EMAIL,
            "phone": PHONE,
            "cep": "01001-000",
            "cpf": CPF,
        }
    )
    requests += [
        f"POST /api/v1/customers HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode(),
        f"POST /api/v1/customers HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!".encode(),
        f"GET /api/v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\r\n\r\n".encode(),
        f"GET /api/v1/customers?cpf={CPF}&email=jo\u00e3o@example.com HTTP/1.1\r\nHost: x\r\nX-E: \u00e9\x7f\r\n\r\n".encode(),
        f"GET /api/v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}x\r\nX-Request-ID: {CPF}\r\nConnection: close\r\n\r\n".encode(),
        f"GET /api/v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token[:-4]}\r\nConnection: close\r\n\r\n".encode(),
        b"GET /api/v1/customers HTTP/1.1\r\nHost: x\r\nX-Big: " + CPF.encode() * 900 + b"\r\n\r\n",
    ]
    for raw in requests:
        await server.exchange(raw)
    records, stream = log_capture
    lines = stream.getvalue().splitlines()
    assert len(lines) >= len(requests)  # at least one line per request
    secrets = [*SECRETS_BASE, token, token[:40], token.split(".")[2][:20], "jo\u00e3o"]
    raw_texts = [
        r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
        for r in records
    ]
    for text in lines + raw_texts:
        for secret in secrets:
            assert secret not in text, (secret, text)
        assert "Traceback" not in text
    for line in lines:
        json.loads(line)
        assert all(" " <= char <= "~" for char in line), line


# A client that hangs up in the middle of its body (finding #11 of the third review): one
# INFO line, no 500 counted, no traceback; chunked or sized, with or without a token.


def _status_counts(server: Server) -> dict[str, float]:
    counts: dict[str, float] = {}
    metrics = server.runner.app[metrics_key]
    metrics.deferred.flush()
    for metric in metrics.requests.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                status = sample.labels["status"]
                counts[status] = counts.get(status, 0) + sample.value
    return counts


def _request(server: Server, framing: str, authorized: bool) -> bytes:
    auth = f"Authorization: Bearer {server.token}\r\n" if authorized else ""
    if framing == "sized":
        body = b'{"name": "Maria'
        length = "Content-Length: 4000\r\n"
    else:
        body = b'40\r\n{"name": "Maria'  # 64 bytes announced, 15 sent
        length = "Transfer-Encoding: chunked\r\n"
    head = (
        f"POST /api/v1/customers HTTP/1.1\r\nHost: x\r\n{auth}{length}"
        "Content-Type: application/json\r\n\r\n"
    )
    return head.encode() + body


@pytest.mark.parametrize("framing", ["sized", "chunked"])
@pytest.mark.parametrize("authorized", [True, False], ids=["token", "anonymous"])
async def test_a_client_hanging_up_mid_body_is_one_info_line_and_no_500(
    server: Server, log_capture: Any, framing: str, authorized: bool
) -> None:
    records, _ = log_capture
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(_request(server, framing, authorized))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()  # RST where the kernel allows, else FIN: gone either way
    for _ in range(100):  # the handlers notice the hang-up asynchronously
        if sum(1 for r in records if "hung up" in r.getMessage()) >= 3 or not authorized:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    assert "500" not in _status_counts(server)
    assert not [r for r in records if r.levelno >= logging.ERROR]
    assert not [r for r in records if r.exc_info]
    if authorized:  # an anonymous one is refused before its body is read
        hung_up = [r for r in records if "hung up" in r.getMessage()]
        assert len(hung_up) == 3
        assert all(r.levelno == logging.INFO for r in hung_up)


# `Expect: 100-continue` (finding #14 of the third review): a body announced over the limit
# is refused before the client is told to send it, on every route that takes one.
EXPECT_ROUTES = [
    ("POST", "/api/v1/customers"),
    ("PATCH", "/api/v1/customers/0123456789abcdef01234567"),
]


@pytest.mark.parametrize(("method", "path"), EXPECT_ROUTES)
@pytest.mark.parametrize("over", [1, 1000, 10**9])
async def test_expect_continue_over_the_limit_is_413_before_100_continue(
    server: Server, method: str, path: str, over: int
) -> None:
    limit = server.settings.server.max_body_bytes
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {limit + over}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    response = await server.exchange(request, timeout=3)
    status_line, headers, body = head(response)
    assert status_line == "HTTP/1.1 413 Request Entity Too Large", response[:200]
    assert b"100 Continue" not in response
    assert headers["content-type"].startswith("application/problem+json")
    assert json.loads(body)["status"] == 413


@pytest.mark.parametrize("length", [0, 2, 4096])
async def test_expect_continue_within_the_limit_still_gets_100_continue(
    server: Server, length: int
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        (
            f"POST /api/v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
            "Expect: 100-continue\r\n\r\n"
        ).encode()
    )
    first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    writer.close()
    assert first == b"HTTP/1.1 100 Continue\r\n\r\n"


async def test_an_unknown_expectation_is_417_problem_json(server: Server) -> None:
    response = await server.exchange(
        b"POST /api/v1/customers HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Expect: something-else\r\n\r\n",
        timeout=3,
    )
    status_line, headers, _ = head(response)
    assert status_line.startswith("HTTP/1.1 417")
    assert headers["content-type"].startswith("application/problem+json")


async def test_every_route_refuses_an_oversized_expect_body(server: Server) -> None:
    """The class, not the instance: whatever route another change adds gets the guard."""
    from aiohttp.web_urldispatcher import ResourceRoute

    from service.api.protocol import _expect_within_limit

    routes = [r for r in server.runner.app.router.routes() if isinstance(r, ResourceRoute)]
    assert routes
    assert all(r._expect_handler is _expect_within_limit for r in routes)
