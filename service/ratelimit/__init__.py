"""Per-caller rate limits: token buckets behind one protocol, in process or in Redis.

`base`: the bucket arithmetic, `Verdict` (RateLimit-* headers), `RateLimiter`.
`memory`: in-process buckets (bounded, idle ones evicted). `redis_limiter`: one Lua script.
The HTTP side (who the caller is, exempt paths, headers) is `service.api.ratelimit`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from service.breaker import Breakers
from service.ratelimit.base import RateLimiter, Verdict
from service.ratelimit.memory import MemoryRateLimiter
from service.settings import RateLimitSettings

__all__ = ["RateLimiter", "Verdict", "build_rate_limiter"]


def build_rate_limiter(
    settings: RateLimitSettings,
    breakers: Breakers,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> RateLimiter:
    """The limiter `ratelimit.url` names."""
    memory = MemoryRateLimiter(
        rate_per_s=settings.rate_per_s,
        burst=settings.burst,
        max_buckets=settings.max_buckets,
        clock=clock,
    )
    if settings.url == "memory://":
        return memory
    import redis.asyncio as aioredis  # the loader checked the redis extra is installed

    from service.ratelimit.redis_limiter import RedisRateLimiter

    # Short timeouts unless the URL sets its own: a slow Redis must not stall every request.
    client = aioredis.Redis.from_url(settings.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    return RedisRateLimiter(
        client,
        rate_per_s=settings.rate_per_s,
        burst=settings.burst,
        fallback=memory,
        breaker=breakers.get("ratelimit:redis"),
    )
