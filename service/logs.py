"""Log lines as JSON, one per record, for every logger (ours, aiohttp's, asyncio's).

Two guarantees, whoever wrote the record:
- no forged or coloured line: JSON with `ensure_ascii` escapes every control character
  (CR, LF, ESC, C1 controls) and every non-ASCII one (bidi overrides included);
- no token, email, CPF or phone in clear: `redact` masks what looks like one. This is the
  net under the rule that nobody logs headers, query strings or personal data at all.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

_REDACTIONS = [
    # JWTs (header.payload[.signature]) and whatever follows an auth scheme
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?"), "[token]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+\S+"), r"\1 [token]"),
    # anything@anything, also percent-encoded
    (re.compile(r"[^\s@\"'<>(),;\[\]]+(?:@|%40)[^\s@\"'<>(),;\[\]]+"), "[email]"),
]
# 8 or more digits, possibly grouped (CPF 529.982.247-25, phone +55 (11) 91234-5678, CEP)
_DIGIT_RUN = re.compile(r"\+?\(?\d(?:[\s().\-/]{0,2}\d){7,}")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return _DIGIT_RUN.sub(lambda match: match[0] if _IPV4.fullmatch(match[0]) else "[number]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD:
                line[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=True, default=lambda value: redact(repr(value)))


def setup_logging(stream: IO[str] = sys.stderr, level: int = logging.INFO) -> logging.Handler:
    """One JSON handler on the root logger (replacing any), so every logger goes through it."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
