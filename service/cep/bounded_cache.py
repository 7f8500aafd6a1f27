"""The in-process CEP cache: bounded in entries and in bytes, least recently used first out.

aiocache's memory backend keeps every key until its TTL (a week for a found CEP): 20,000
random CEPs were 26 MiB, with no cap. This one answers the four calls the resolver makes
(`get`, `set`, `exists`, `close`) and evicts the least recently used entries past
`max_entries` or `max_bytes` (an entry's size: its key and its JSON text).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

MAX_ENTRIES = 50_000
MAX_BYTES = 16 * 1024 * 1024


class BoundedMemoryCache:
    def __init__(
        self,
        *,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, int, Any]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, _, value = entry
        if self._clock() >= expires_at:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: Any, ttl: float) -> None:
        size = len(key) + len(json.dumps(value, separators=(",", ":")))
        if size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock() + ttl, size, value)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    async def exists(self, key: str) -> bool:
        return await self.get(key) is not None

    async def close(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def _drop(self, key: str) -> None:
        _, size, _ = self._entries.pop(key)
        self.bytes -= size
