"""Rate limits in Redis, against a real redis-server (skipped, with the reason, without one)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.breaker import CircuitBreaker
from service.ratelimit.memory import MemoryRateLimiter
from service.ratelimit.redis_limiter import KEY_PREFIX, RedisRateLimiter
from tests.fakes import FakeClock

CUSTOMERS = "/api/v1/customers"


def redis_limiter(url: str, clock: FakeClock, *, rate: float, burst: int) -> RedisRateLimiter:
    fallback = MemoryRateLimiter(rate_per_s=rate, burst=burst, clock=clock)
    return RedisRateLimiter(
        aioredis.Redis.from_url(url),
        rate_per_s=rate,
        burst=burst,
        fallback=fallback,
        breaker=CircuitBreaker("ratelimit:redis", failures=2, cooldown_s=30, clock=clock),
        clock=clock,
    )


async def test_two_app_instances_share_one_bucket(make_client, redis_url: str) -> None:
    extra = {"ratelimit": {"enabled": True, "rate_per_s": 0.001, "burst": 3, "url": redis_url}}
    first, second = await make_client(extra), await make_client(extra)
    statuses = [(await app.get(CUSTOMERS)).status for app in (first, second, first, second)]
    assert statuses == [200, 200, 200, 429]
    refused = await first.get(CUSTOMERS)
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1


async def test_buckets_expire_and_hold_no_caller_in_clear(redis_url: str, clock: FakeClock) -> None:
    limiter = redis_limiter(redis_url, clock, rate=2.0, burst=4)
    try:
        await limiter.take("sub:maria@example.com")
        client = aioredis.Redis.from_url(redis_url)
        keys = [key.decode() async for key in client.scan_iter("*")]
        assert len(keys) == 1 and keys[0].startswith(KEY_PREFIX)
        assert "maria" not in keys[0]
        assert 0 < await client.pttl(keys[0]) <= 3000  # a full refill (2 s) and a margin
        await client.aclose()
    finally:
        await limiter.close()


async def test_concurrent_takes_never_share_a_token(redis_url: str, clock: FakeClock) -> None:
    limiters = [redis_limiter(redis_url, clock, rate=0.001, burst=10) for _ in range(3)]
    try:
        verdicts = await asyncio.gather(*(limiters[i % 3].take("sub:a") for i in range(30)))
        assert sum(v.allowed for v in verdicts) == 10
    finally:
        for limiter in limiters:
            await limiter.close()


async def test_a_dead_redis_falls_back_to_in_process_buckets(clock: FakeClock) -> None:
    limiter = redis_limiter("redis://127.0.0.1:1/0", clock, rate=0.001, burst=2)
    try:
        verdicts = [await limiter.take("sub:a") for _ in range(4)]
        assert [v.allowed for v in verdicts] == [True, True, False, False]  # still limited
        assert limiter._breaker.state.value == "open"  # no more connection attempts
    finally:
        await limiter.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rate=st.floats(0.5, 50),
    burst=st.integers(1, 10),
    gaps=st.lists(st.floats(0, 1), min_size=1, max_size=40),
)
def test_the_lua_script_and_the_python_buckets_agree(redis_url: str, rate, burst, gaps) -> None:
    """The Redis backend runs take_token's steps in Lua: same answers for the same times."""

    async def run() -> None:
        clock = FakeClock(1_767_225_600.0)  # wall-clock seconds, as the Redis backend uses
        memory = MemoryRateLimiter(rate_per_s=rate, burst=burst, clock=clock)
        shared = redis_limiter(redis_url, clock, rate=rate, burst=burst)
        try:
            await shared._client.flushall()
            for gap in gaps:
                clock.advance(gap)
                expected, got = await memory.take("k"), await shared.take("k")
                assert got.allowed == expected.allowed
                assert got.tokens == pytest.approx(expected.tokens, abs=1e-6)
        finally:
            await shared.close()

    asyncio.run(run())
