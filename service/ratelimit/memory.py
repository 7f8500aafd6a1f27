"""In-process buckets: one replica's view, bounded memory."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from service.ratelimit.base import Bucket, Verdict, take_token


class MemoryRateLimiter:
    """Buckets in an ordered dict, least recently used first.

    Each call drops the buckets that have been idle long enough to be full again (they
    answer exactly like a missing bucket), then, past `max_buckets`, the least recently used
    ones (those callers start again from a full bucket: lenient, never stricter).
    """

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        max_buckets: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._max_buckets = max_buckets
        self._clock = clock
        self._refill_s = burst / rate_per_s  # an idle bucket is full after this long
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, key: str) -> Verdict:
        now = self._clock()
        self._evict_full(now)
        allowed, bucket = take_token(self._buckets.pop(key, None), now, self._rate, self._burst)
        self._buckets[key] = bucket
        while len(self._buckets) > self._max_buckets:
            self._buckets.popitem(last=False)
        return Verdict(allowed, self._burst, bucket.tokens, self._rate)

    def _evict_full(self, now: float) -> None:
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if now - oldest.updated_at < self._refill_s:
                return
            self._buckets.popitem(last=False)

    async def close(self) -> None:
        self._buckets.clear()
