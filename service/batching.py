"""Per-request bookkeeping done in batches.

A request notes what it has to record (an access line's fields, a metric update) in a
list; the batch handles them together, at most `after_s` after the first one, at once
when `limit` wait, or when asked (`flush`: before a scrape, at exit). Running the same few
functions a thousand times in a row costs a fraction of running each once inside every
request, between everything else a request runs (docs/performance.md, "Batched
bookkeeping").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Batch(Generic[T]):
    def __init__(
        self, handle: Callable[[list[T]], None], *, after_s: float = 0.05, limit: int = 1000
    ) -> None:
        self._handle = handle
        self._after_s = after_s
        self._limit = limit
        self._pending: list[T] = []

    def add(self, item: T) -> None:
        pending = self._pending
        pending.append(item)
        if len(pending) >= self._limit:
            self.flush()
        elif len(pending) == 1:
            try:
                asyncio.get_running_loop().call_later(self._after_s, self.flush)
            except RuntimeError:  # no loop: handle it now
                self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            self._handle(pending)
