"""Buckets in Redis, shared by every replica: one Lua script per request (EVALSHA).

The script reads the bucket, refills it, takes a token and writes it back with a TTL of one
full refill (an expired key is a full bucket), atomically: concurrent requests from several
replicas never take the same token twice. Time comes from the caller's wall clock (replicas
keep it in sync with NTP); a bucket stamped in the future is not refilled until then.

When Redis cannot answer, the request is judged by this replica's in-process buckets
(limits per replica instead of shared, never unlimited); a breaker keeps a dead Redis from
costing its timeout on every request.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.breaker import CircuitBreaker, CircuitOpen
from service.ratelimit.base import RateLimiter, Verdict

log = logging.getLogger(__name__)

KEY_PREFIX = "ratelimit:v1:"

# KEYS[1]: the bucket; ARGV: rate per second, burst, now (seconds), TTL (milliseconds).
# The same steps as service.ratelimit.base.take_token. Returns {allowed (0/1), tokens left}.
TAKE_TOKEN_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {allowed, string.format('%.17g', tokens)}
"""


def bucket_key(key: str) -> str:
    """A fixed-length Redis key: subjects and addresses are not stored in clear."""
    return KEY_PREFIX + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


class RedisRateLimiter:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        rate_per_s: float,
        burst: int,
        fallback: RateLimiter,
        breaker: CircuitBreaker,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._rate = rate_per_s
        self._burst = burst
        self._ttl_ms = math.ceil(burst / rate_per_s * 1000) + 1000
        self._script: Any = client.register_script(TAKE_TOKEN_LUA)
        self._fallback = fallback
        self._breaker = breaker
        self._clock = clock

    async def take(self, key: str) -> Verdict:
        try:
            return await self._breaker.call(lambda: self._take(key), (RedisError, OSError))
        except CircuitOpen:
            return await self._fallback.take(key)
        except (RedisError, OSError) as exc:
            log.warning("rate limit store failed, using in-process buckets: %r", exc)
            return await self._fallback.take(key)

    async def _take(self, key: str) -> Verdict:
        now = repr(self._clock())  # shortest text that reads back as the same float
        allowed, tokens = await self._script(
            keys=[bucket_key(key)], args=[repr(self._rate), self._burst, now, self._ttl_ms]
        )
        return Verdict(bool(allowed), self._burst, float(tokens), self._rate)

    async def ping(self) -> None:
        """For readiness: raises when Redis does not answer."""
        await self._client.ping()

    async def close(self) -> None:
        await self._fallback.close()
        await self._client.aclose()
