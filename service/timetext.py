"""Times as text, fast: a formatter of `time.time()` values that formats the date and time
part once per second (an access line and a read entry are written thousands a second)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime


def millisecond_texts(zone: str) -> Callable[[float], str]:
    """`2026-01-01T12:00:00.123` + `zone` (UTC, milliseconds truncated) of a `time.time()`
    value; `zone` is how the caller's format writes UTC (`Z`, `+00:00`)."""
    last: list[int | str] = [-1, ""]

    def text(seconds: float) -> str:
        whole, millis = divmod(int(seconds * 1000), 1000)
        if whole != last[0]:
            last[:] = [whole, datetime.fromtimestamp(whole, UTC).isoformat()[:19]]
        return f"{last[1]}.{millis:03d}{zone}"

    return text
