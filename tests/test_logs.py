"""Both log formats mask and escape the same way; the access line has what an operator needs;
`--log-format` / `logging.format` pick the format."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.__main__ import _parser
from service.api.access_log import AccessLogger
from service.api.protocol import new_request_id
from service.logs import (
    FLUSH_AFTER_S,
    FLUSH_LINES,
    AccessLines,
    JsonFormatter,
    TextFormatter,
    escape,
    make_formatter,
    redact,
    setup_logging,
)
from service.settings import SettingsError, load_settings
from tests.hostile.conftest import ServiceTestServer

SECRETS = {
    "cpf": "529.982.247-25",
    "phone": "+55 (11) 91234-5678",
    "email": "maria@example.com",
    "token": "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
}
FORMATTERS = {"json": JsonFormatter, "text": TextFormatter}


def record(message: str, *args: Any, exc: bool = False, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("test", logging.INFO, __file__, 1, message, args or None, None)
    if exc:
        try:
            raise ValueError(f"bad {SECRETS['cpf']}\n\x1b[31mforged")
        except ValueError:
            import sys

            made.exc_info = sys.exc_info()
    made.__dict__.update(extra)
    return made


@pytest.mark.parametrize("fmt", FORMATTERS)
def test_secrets_are_masked_in_message_extras_and_traceback(fmt):
    line = FORMATTERS[fmt]().format(
        record(
            "cpf %s phone %s email %s auth Bearer %s",
            *SECRETS.values(),
            exc=True,
            field=SECRETS["email"],
            nested={"list": [SECRETS["cpf"]]},
        )
    )
    for secret in SECRETS.values():
        assert secret not in line
    for mark in ("[number]", "[email]", "[token]"):
        assert mark in line
    assert "ValueError" in line  # the traceback is there, masked
    assert "\n" not in line and "\x1b" not in line


@pytest.mark.parametrize("fmt", FORMATTERS)
@given(text=st.text())
def test_any_text_makes_one_line_without_control_characters(fmt, text):
    line = FORMATTERS[fmt]().format(record("%s", text, extra_field=text))
    assert "\n" not in line and "\r" not in line
    assert all(char.isprintable() for char in line)
    if fmt == "json":
        assert line.isascii()
        json.loads(line)


def test_escape_keeps_printable_text_and_escapes_the_rest():
    assert escape("Praça da Sé") == "Praça da Sé"
    assert escape("a\nb\x1b[31m\u202ec\x00") == "a\\nb\\x1b[31m\\u202ec\\x00"


def test_json_line_fields():
    line = json.loads(JsonFormatter().format(record("hi", route="/x", status=200, time="forged")))
    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert line["time"] != "forged" and line["time"].endswith("+00:00")
    assert (line["level"], line["logger"], line["message"]) == ("INFO", "test", "hi")
    assert (line["route"], line["status"]) == ("/x", 200)


def test_text_line_shows_extras_the_message_does_not():
    shown = {"method": "GET", "status": 200}
    line = TextFormatter().format(
        record("%(method)s %(status)s", shown, method="GET", status=200, request_id="r-1")
    )
    assert line.endswith("INFO test: GET 200 request_id=r-1")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_otherwise():
    assert isinstance(make_formatter("auto", Tty()), TextFormatter)
    assert isinstance(make_formatter("auto", io.StringIO()), JsonFormatter)
    with pytest.raises(ValueError, match="log format"):
        make_formatter("xml", io.StringIO())


def test_log_format_from_the_command_line_and_from_config():
    args = _parser().parse_args(["serve", "--log-format", "text"])
    assert args.log_format == "text"
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--log-format", "xml"])
    assert load_settings(environ={}).logging.format == "auto"
    env = {"CUSTOMERS__LOGGING__FORMAT": "json"}
    assert load_settings(environ=env).logging.format == "json"
    with pytest.raises(SettingsError, match="logging.format"):
        load_settings(environ={"CUSTOMERS__LOGGING__FORMAT": "xml"})


# --- the access line, on the production server stack -------------------------------------


@pytest.fixture(params=["json", "text"])
def log_lines(request: pytest.FixtureRequest) -> Iterator[tuple[str, Callable[[], list[str]]]]:
    stream = io.StringIO()
    root = logging.getLogger()
    old_handlers, old_level = list(root.handlers), root.level
    setup_logging(request.param, stream)
    yield request.param, lambda: stream.getvalue().splitlines()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in old_handlers:
        root.addHandler(handler)
    root.setLevel(old_level)


@pytest.fixture
async def production_client(aiohttp_client, make_settings):
    from service.api.protocol import server_options
    from service.app import create_app
    from service.auth.local_issuer import issue_local_token

    settings = make_settings()
    token = issue_local_token(settings, "client-7", ["customers:read"], [], 600)
    server = ServiceTestServer(
        create_app(settings), access_log_class=AccessLogger, **server_options(settings)
    )
    return await aiohttp_client(server), token


async def test_one_access_line_per_request(production_client, log_lines):
    fmt, lines = log_lines
    client, token = production_client
    customer = "/api/v1/customers/0123456789abcdef01234567"
    ok = await client.get(
        customer, headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-1"}
    )
    assert ok.status == 404 and ok.headers["X-Request-ID"] == "req-1"
    anonymous = await client.get("/api/v1/customers?cpf=52998224725")
    generated = anonymous.headers["X-Request-ID"]
    assert not any(char.isdigit() for char in generated)  # nothing the masking would hide
    access = [line for line in lines() if "aiohttp.access" in line]
    assert len(access) == 2
    if fmt == "json":
        first, second = (json.loads(line) for line in access)
        assert {k: first[k] for k in ("method", "route", "status", "request_id", "subject")} == {
            "method": "GET",
            "route": "/api/v1/customers/{customer_id}",
            "status": 404,
            "request_id": "req-1",
            "subject": "client-7",
        }
        assert isinstance(first["latency_ms"], float)
        assert (second["route"], second["status"], second["subject"]) == (
            "/api/v1/customers",
            401,
            None,
        )
        assert second["request_id"] == generated
    else:
        assert "GET /api/v1/customers/{customer_id} 404 " in access[0]
        assert access[0].endswith("request_id=req-1 subject=client-7")
        assert access[1].endswith(f"request_id={generated}")
    for line in access:
        assert "52998224725" not in line and "cpf" not in line and token not in line


# --- the access line's fast path writes what the formatter writes -------------------------


def formatter_line(fields: dict[str, Any]) -> str:
    """The access line as JsonFormatter formats the record AccessLogger's slow path logs."""
    shown = {name: fields[name] for name in ("method", "route", "status", "latency_ms")}
    made = logging.LogRecord(
        "aiohttp.access", logging.INFO, __file__, 1,
        "%(method)s %(route)s %(status)s %(latency_ms)sms", (shown,), None,
    )  # fmt: skip
    made.__dict__.update(fields)
    return JsonFormatter().format(made)


def fast_line(fields: dict[str, Any], ours: bool) -> str:
    stream = io.StringIO()
    lines = AccessLines(logging.StreamHandler(stream))
    lines.add(**fields, request_id_is_ours=ours)
    lines.flush()
    return stream.getvalue()


def without_time(line: str) -> str:
    return re.sub(r'^\{"time": "[^"]*"', '{"time": ""', line)


TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from([*SECRETS.values(), "GET", "ünïcödé\u202e", "a\nb", "12345678"]),
)


@given(
    method=TEXT,
    route=st.sampled_from(["/api/v1/customers", "/api/v1/customers/{customer_id}", "-"]),
    status=st.sampled_from([200, 201, 401, 404, 422, 503]),
    latency_ms=st.floats(0, 10**7, allow_nan=False).map(lambda x: round(x, 1)),
    request_id=TEXT,
    subject=st.one_of(st.none(), TEXT),
)
def test_the_fast_access_line_is_the_formatter_line(
    method: str, route: str, status: int, latency_ms: float, request_id: str, subject: str | None
) -> None:
    fields: dict[str, Any] = {
        "method": method, "route": route, "status": status, "latency_ms": latency_ms,
        "request_id": request_id, "subject": subject,
    }  # fmt: skip
    fast = fast_line(fields, ours=False)
    assert fast.endswith("\n") and fast.count("\n") == 1
    assert without_time(fast.rstrip("\n")) == without_time(formatter_line(fields))


def test_generated_request_ids_need_no_masking() -> None:
    """The fast path skips masking the ids the server made: masking would not change them."""
    made = [new_request_id() for _ in range(2000)]
    assert len(set(made)) == len(made)
    assert all(len(one) == 32 and one.isalpha() for one in made)
    for generated in made[:200]:
        assert redact(generated) == generated
        fields: dict[str, Any] = {"method": "GET", "route": "-", "status": 200, "latency_ms": 1.0,
                  "request_id": generated, "subject": None}  # fmt: skip
        assert without_time(fast_line(fields, ours=True)) == without_time(fast_line(fields, False))


def test_fast_line_time_is_the_formatters_format() -> None:
    fields: dict[str, Any] = {"method": "GET", "route": "-", "status": 200, "latency_ms": 1.0,
              "request_id": "r", "subject": None}  # fmt: skip
    stamp = json.loads(fast_line(fields, ours=False))["time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", stamp)


async def test_access_lines_are_written_together_soon_after_the_first() -> None:
    writes: list[str] = []

    class Recording(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return super().write(text)

    lines = AccessLines(logging.StreamHandler(Recording()))
    fields: dict[str, Any] = {"method": "GET", "route": "-", "status": 200, "latency_ms": 1.0,
              "request_id": "r", "subject": None}  # fmt: skip
    for _ in range(3):
        lines.add(**fields, request_id_is_ours=False)
        await asyncio.sleep(0)
    assert writes == []
    await asyncio.sleep(FLUSH_AFTER_S * 2)
    assert len(writes) == 1 and writes[0].count("\n") == 3
    for _ in range(FLUSH_LINES):  # a full batch does not wait
        lines.add(**fields, request_id_is_ours=False)
    assert len(writes) == 2 and writes[1].count("\n") == FLUSH_LINES
