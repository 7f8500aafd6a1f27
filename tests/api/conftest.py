"""The API tests run with asyncio's debug mode and a 20 ms slow-callback threshold: a
request handling step that holds the event loop too long (a blocking call on the loop)
fails the test that caused it.

asyncio measures wall-clock time, so on a busy machine (2 shared cores) a step is sometimes
preempted past 20 ms without blocking anything. Reports from 20 ms are printed; a test fails
from `FAIL_MS` (env `ASYNCIO_SLOW_FAIL_MS`, default 100 ms: no request step of this service
costs that much CPU, so only a blocking call gets there). Set it to 20 on a quiet machine.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
from collections.abc import AsyncIterator

import pytest

SLOW_CALLBACK_S = 0.020
FAIL_S = float(os.environ.get("ASYNCIO_SLOW_FAIL_MS", "100")) / 1000
_TOOK = re.compile(r" took (\d+\.\d+) seconds")


class SlowCallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        took = _TOOK.search(message)
        # Only the server's request handling counts: tests and fixtures build apps, keys
        # and policies synchronously before anything is served.
        if took and message.startswith("Executing ") and "RequestHandler" in message:
            if float(took.group(1)) >= FAIL_S:
                self.reports.append(message)


@pytest.fixture(autouse=True)
async def no_blocking_call_on_the_loop() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_S
    handler = SlowCallbacks()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    # A full garbage collection of the whole test process (every earlier test's objects,
    # coverage's data) takes 100+ ms and lands on whichever callback runs then: freeze what
    # exists before the test (cheap, no collection), so collections during it only walk
    # what it allocates; unfrozen after, the next collection frees the rest.
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        logger.removeHandler(handler)
    assert not handler.reports, "blocking calls on the event loop:\n" + "\n".join(handler.reports)
