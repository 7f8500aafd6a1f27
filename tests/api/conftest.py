"""The API tests run with asyncio's debug mode: a request handling step that holds the
event loop longer than 20 ms (a blocking call on the loop) fails the test that caused it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

SLOW_CALLBACK_S = 0.020


class SlowCallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        # Only the server's request handling counts: tests and fixtures build apps, keys
        # and policies synchronously before anything is served.
        if message.startswith("Executing ") and "RequestHandler" in message:
            self.reports.append(message)


@pytest.fixture(autouse=True)
async def no_blocking_call_on_the_loop() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_S
    handler = SlowCallbacks()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not handler.reports, "blocking calls on the event loop:\n" + "\n".join(handler.reports)
