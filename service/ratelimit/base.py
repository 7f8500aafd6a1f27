"""Token buckets: the arithmetic, the verdict, the limiter protocol and the 429 problem.

A bucket holds up to `burst` tokens and refills at `rate_per_s`; each request takes one.
A bucket idle for `burst / rate_per_s` seconds is full again, i.e. the same as no bucket:
that is what lets both backends forget idle callers without changing any answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Bucket:
    tokens: float
    updated_at: float


def take_token(bucket: Bucket | None, now: float, rate: float, burst: int) -> tuple[bool, Bucket]:
    """(allowed, new bucket state) for one request at `now`; None is a full bucket.

    The Redis backend runs the same steps in Lua (service/ratelimit/redis_limiter.py);
    tests check that both agree.
    """
    if bucket is None:
        tokens = float(burst)
    else:
        tokens = min(float(burst), bucket.tokens + max(0.0, now - bucket.updated_at) * rate)
    allowed = tokens >= 1.0
    if allowed:
        tokens -= 1.0
    return allowed, Bucket(tokens, now)


@dataclass(frozen=True)
class Verdict:
    """The answer for one request, with what the RateLimit-* headers need."""

    allowed: bool
    limit: int  # the burst: requests a full bucket allows at once
    tokens: float  # left in the bucket after this request
    rate_per_s: float

    @property
    def retry_after_s(self) -> int:
        """Whole seconds until one token is back (at least 1)."""
        return max(1, math.ceil((1.0 - self.tokens) / self.rate_per_s))

    def headers(self) -> dict[str, str]:
        """draft-ietf-httpapi-ratelimit-headers-06: Limit, Remaining, Reset, Policy.

        Reset is the seconds until the bucket is full again; the policy's window `w` is the
        time a full refill takes, so `limit;w=window` states the sustained rate too.
        """
        window = max(1, math.ceil(self.limit / self.rate_per_s))
        reset = math.ceil(max(0.0, self.limit - self.tokens) / self.rate_per_s)
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, math.floor(self.tokens))),
            "RateLimit-Reset": str(reset),
            "RateLimit-Policy": f"{self.limit};w={window}",
        }


class RateLimiter(Protocol):
    """Takes one token from the bucket of `key`; the two backends: memory, Redis."""

    async def take(self, key: str) -> Verdict: ...

    async def close(self) -> None: ...
