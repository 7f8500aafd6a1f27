"""Log lines for every logger (ours, aiohttp's, asyncio's): JSON (python-json-logger) or text.

Two guarantees, whoever wrote the record, in both formats:
- no forged or coloured line: one record is one line. JSON with `ensure_ascii` escapes every
  control and non-ASCII character (bidi overrides included); text escapes every character
  that is not printable (`\\n`, `\\x1b`, `\\u202e`), tracebacks included;
- no token, email, CPF or phone in clear: `redact` masks what looks like one, in the
  message, the traceback and every `extra=` value. This is the net under the rule that
  nobody logs headers, query strings or personal data at all.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from service.batching import Batch
from service.timetext import millisecond_texts

LOG_FORMATS = ("auto", "json", "text")

# What `redact` masks. Each pattern runs only when a cheap test says it could match: most log
# values hold nothing to mask, and an access line is written for every request.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?")
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+\S+")
# anything@anything, also percent-encoded; a match starts only where a run of address
# characters starts, so a long run without `@` costs one pass, not one per character
_ADDRESS_CHAR = r"[^\s@\"'<>(),;\[\]]"
_EMAIL = re.compile(rf"(?<!{_ADDRESS_CHAR}){_ADDRESS_CHAR}+(?:@|%40){_ADDRESS_CHAR}+")
# 8 or more digits, possibly grouped (CPF 529.982.247-25, phone +55 (11) 91234-5678, CEP)
_DIGIT_RUN = re.compile(r"\+?\(?\d(?:[\s().\-/]{0,2}\d){7,}")
_MAYBE_DIGIT_RUN = re.compile(r"\d(?:[\s().\-/]{0,2}\d){7}")  # the same, without the prefix
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
# Attributes every LogRecord has; anything else was passed with `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    if "eyJ" in text:
        text = _JWT.sub("[token]", text)
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered:
        text = _AUTH_SCHEME.sub(r"\1 [token]", text)
    if "@" in text or "%40" in text:
        text = _EMAIL.sub("[email]", text)
    if _MAYBE_DIGIT_RUN.search(text):
        text = _DIGIT_RUN.sub(lambda m: m[0] if _IPV4.fullmatch(m[0]) else "[number]", text)
    return text


def _redact_value(value: Any) -> Any:
    """Strings masked, containers walked; numbers, booleans and None as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(key): _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(repr(value))  # anything else: its repr, masked


def escape(text: str) -> str:
    """`text` with every unprintable character as a Python escape (`\\n`, `\\x1b`, `\\u202e`)."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


# The access line (service/api/access_log.py): its fields, and those the client chose.
ACCESS_LOGGER = "aiohttp.access"
ACCESS_FIELDS = ("method", "route", "status", "latency_ms", "request_id", "subject")
_CLIENT_CHOSEN = frozenset({"method", "request_id", "subject"})


class JsonFormatter(_LibraryJsonFormatter):
    """`{"time", "level", "logger", "message", ...extra, "exception"}`, every value masked.

    The access line, written for every request, takes a short path with the same result:
    its fields are known, so only the message and the fields the client chose (method,
    request id, token subject) go through `redact`; the route template, status and latency
    are the server's own.
    """

    def format(self, record: logging.LogRecord) -> str:
        if record.name != ACCESS_LOGGER or record.exc_info or record.stack_info:
            return super().format(record)
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in ACCESS_FIELDS:
            value = getattr(record, name, None)
            if name in _CLIENT_CHOSEN and isinstance(value, str):
                value = redact(value)
            line[name] = value
        return json.dumps(line, ensure_ascii=True)

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
            json_ensure_ascii=True,
            json_default=lambda value: redact(repr(value)),
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = None  # first in the line
        super().add_fields(log_data, record, message_dict)
        log_data["time"] = _time(record)  # also over an `extra=` named time

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # The time is ours (its digits would look like a number to mask); the rest is masked.
        return {
            key: value if key == "time" else _redact_value(value) for key, value in log_data.items()
        }


class _Memo:
    """`compute(value)` remembered for up to `bound` distinct values (then started afresh):
    the access line's masked and JSON-encoded parts repeat from request to request."""

    def __init__(self, compute: Callable[[str], str], bound: int = 4096) -> None:
        self._compute, self._bound = compute, bound
        self._known: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        known = self._known.get(value)
        if known is None:
            if len(self._known) >= self._bound:
                self._known.clear()
            known = self._known[value] = self._compute(value)
        return known


def _json_text(value: str) -> str:
    return json.dumps(value, ensure_ascii=True)


FLUSH_AFTER_S = 0.05
FLUSH_LINES = 1000
# when, method, route, status, latency (ms), request id, whether the server made it, subject
_AccessFields = tuple[float, str, str, int, float, str, bool, str | None]


class AccessLines:
    """The JSON access line without a LogRecord: the line `JsonFormatter` writes for the same
    request, character for character (tests/test_logs.py compares them), built from a
    template whose masked and encoded parts are remembered per distinct value.

    A request only notes its fields; the lines are built and written together, in a
    `Batch` (at most `FLUSH_AFTER_S` after the first of them, or once `FLUSH_LINES` wait).
    A kill -9 loses at most that last fraction of a second of access lines; a clean exit
    writes them (`flush_access_lines`: at exit, and at the end of a drain).

    Used only while its handler is the root logger's one handler and nothing filters the
    access logger (`active`); otherwise, as under pytest's caplog, lines go through logging.
    """

    def __init__(self, handler: logging.StreamHandler[IO[str]]) -> None:
        self.handler = handler
        self._batch = Batch(self._write, after_s=FLUSH_AFTER_S, limit=FLUSH_LINES)
        self._masked = _Memo(lambda value: _json_text(redact(value)))
        self._encoded = _Memo(_json_text)
        self._time = millisecond_texts("+00:00")  # `_time(record)`'s text

    def active(self, logger: logging.Logger) -> bool:
        handlers = logging.root.handlers
        return (
            logger.isEnabledFor(logging.INFO)
            and len(handlers) == 1
            and handlers[0] is self.handler
            and not (logger.handlers or logger.filters or self.handler.filters)
            and logger.propagate
        )

    def add(
        self,
        method: str,
        route: str,
        status: int,
        latency_ms: float,
        request_id: str,
        request_id_is_ours: bool,
        subject: str | None,
    ) -> None:
        """Note one access line. `request_id_is_ours`: generated by the server, so there is
        nothing in it to mask (service/api/protocol.py makes ids without digits)."""
        at = time.time()
        fields = (at, method, route, status, latency_ms, request_id, request_id_is_ours, subject)
        self._batch.add(fields)

    def _line(self, fields: _AccessFields) -> str:
        at, method, route, status, latency_ms, request_id, request_id_is_ours, subject = fields
        masked = self._masked
        message = masked(f"{method} {route} {status} {latency_ms}ms")
        rid = self._encoded(request_id) if request_id_is_ours else masked(request_id)
        return (
            f'{{"time": "{self._time(at)}", "level": "INFO", "logger": "{ACCESS_LOGGER}", '
            f'"message": {message}, "method": {masked(method)}, "route": {self._encoded(route)}, '
            f'"status": {status}, "latency_ms": {latency_ms!r}, "request_id": {rid}, '
            f'"subject": {"null" if subject is None else masked(subject)}}}\n'
        )

    def flush(self) -> None:
        self._batch.flush()

    def _write(self, pending: list[_AccessFields]) -> None:
        lines = "".join([self._line(fields) for fields in pending])
        self.handler.acquire()
        try:
            with contextlib.suppress(OSError, ValueError):  # a closed or broken stream
                self.handler.stream.write(lines)
                self.handler.flush()
        finally:
            self.handler.release()


_access_lines: AccessLines | None = None


def flush_access_lines() -> None:
    """The access lines still waiting for their batch: at exit (atexit), and at the end of
    a drain (a forked worker leaves through `os._exit`, which skips atexit)."""
    if _access_lines is not None:
        _access_lines.flush()


atexit.register(flush_access_lines)


def access_lines(logger: logging.Logger) -> AccessLines | None:
    """The JSON access line's fast path, when `setup_logging` installed it and it applies."""
    lines = _access_lines
    return lines if lines is not None and lines.active(logger) else None


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value | traceback`, masked as JSON is, then escaped:
    one line. `extra=` values the message does not show already (a mapping `args`) are
    appended as `key=value`."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        shown = record.args if isinstance(record.args, Mapping) else {}
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in shown and value is not None:
                text += f" {key}={value}"
        if record.exc_info:
            text += " | " + self.formatException(record.exc_info)
        if record.stack_info:
            text += " | " + self.formatStack(record.stack_info)
        return escape(f"{_time(record)} {record.levelname} {record.name}: {redact(text)}")


def make_formatter(log_format: str, stream: IO[str]) -> logging.Formatter:
    """`auto`: text when `stream` is a terminal, JSON otherwise (compose, systemd, files)."""
    if log_format == "auto":
        log_format = "text" if stream.isatty() else "json"
    if log_format == "text":
        return TextFormatter()
    if log_format == "json":
        return JsonFormatter()
    raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")


def setup_logging(
    log_format: str = "json", stream: IO[str] = sys.stderr, level: int = logging.INFO
) -> logging.Handler:
    """One handler on the root logger (replacing any), so every logger goes through it.

    Records skip what no line shows (the logging HOWTO's "Optimization"): the caller's
    file and line, thread, process and multiprocessing names. An access line is written
    for every request, so each microsecond here is one per request.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _access_lines
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(log_format, stream))
    if _access_lines is not None:
        _access_lines.flush()
    _access_lines = AccessLines(handler) if isinstance(handler.formatter, JsonFormatter) else None
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
