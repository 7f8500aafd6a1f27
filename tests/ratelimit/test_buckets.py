"""Token buckets without HTTP: refill, headers, isolation, bounded memory, the rate property."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from service.ratelimit.base import Verdict
from service.ratelimit.memory import MemoryRateLimiter
from tests.fakes import FakeClock


def limiter(clock: FakeClock, *, rate: float = 2.0, burst: int = 4, max_buckets: int = 1000):
    return MemoryRateLimiter(rate_per_s=rate, burst=burst, max_buckets=max_buckets, clock=clock)


async def take_many(bucket: MemoryRateLimiter, key: str, times: int) -> list[Verdict]:
    return [await bucket.take(key) for _ in range(times)]


async def test_a_burst_then_refusal_then_refill(clock: FakeClock) -> None:
    bucket = limiter(clock)
    verdicts = await take_many(bucket, "sub:a", 5)
    assert [v.allowed for v in verdicts] == [True, True, True, True, False]
    assert [v.headers()["RateLimit-Remaining"] for v in verdicts] == ["3", "2", "1", "0", "0"]
    clock.advance(0.5)  # one token at 2/s
    assert (await bucket.take("sub:a")).allowed
    assert not (await bucket.take("sub:a")).allowed
    clock.advance(60)  # refilled to the burst, never beyond
    assert [v.allowed for v in await take_many(bucket, "sub:a", 5)] == [True] * 4 + [False]


async def test_headers_of_a_refusal(clock: FakeClock) -> None:
    bucket = limiter(clock, rate=0.25, burst=2)  # one token every 4 s
    await take_many(bucket, "sub:a", 2)
    clock.advance(1)
    refused = await bucket.take("sub:a")
    assert not refused.allowed
    assert refused.retry_after_s == 3  # 0.25 token there, 0.75 missing at 0.25/s
    assert refused.headers() == {
        "RateLimit-Limit": "2",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "7",  # 1.75 tokens to a full bucket
        "RateLimit-Policy": "2;w=8",
    }


async def test_retry_after_is_whole_seconds_and_at_least_one(clock: FakeClock) -> None:
    bucket = limiter(clock, rate=1000.0, burst=1)
    await bucket.take("sub:a")
    refused = await bucket.take("sub:a")
    assert not refused.allowed and refused.retry_after_s == 1


async def test_keys_are_isolated(clock: FakeClock) -> None:
    bucket = limiter(clock)
    await take_many(bucket, "sub:a", 4)
    assert not (await bucket.take("sub:a")).allowed
    assert (await bucket.take("sub:b")).allowed
    assert (await bucket.take("addr:127.0.0.1")).allowed


async def test_memory_is_bounded_least_recently_used_first(clock: FakeClock) -> None:
    bucket = limiter(clock, max_buckets=3)
    await take_many(bucket, "sub:old", 4)
    for i in range(10):
        await bucket.take(f"sub:{i}")
        assert len(bucket) <= 3
    # "sub:old" was evicted: it starts again from a full bucket (lenient, never stricter)
    assert (await bucket.take("sub:old")).allowed


async def test_idle_buckets_are_dropped_once_full_again(clock: FakeClock) -> None:
    bucket = limiter(clock, rate=2.0, burst=4)  # full after 2 s idle
    for i in range(50):
        await bucket.take(f"sub:{i}")
    assert len(bucket) == 50
    clock.advance(1.9)
    await bucket.take("sub:recent")
    assert len(bucket) == 51
    clock.advance(0.1)
    await bucket.take("sub:recent")
    assert len(bucket) == 1


@given(
    rate=st.floats(0.5, 50),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_never_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, gaps: list[float]
) -> None:
    """Over any stretch of requests, allowed <= burst + rate * elapsed (+1 for the edges)."""
    clock = FakeClock()
    bucket = limiter(clock, rate=rate, burst=burst)
    times: list[float] = []

    async def run() -> list[bool]:
        allowed = []
        for gap in gaps:
            clock.advance(gap)
            times.append(clock.now)
            allowed.append((await bucket.take("k")).allowed)
        return allowed

    allowed = asyncio.run(run())
    for start in range(len(times)):
        count = 0
        for end in range(start, len(times)):
            count += allowed[end]
            assert count <= burst + rate * (times[end] - times[start]) + 1e-9
    # and a caller who waits a full refill between requests is never refused
    if all(gap >= burst / rate for gap in gaps[1:]):
        assert all(allowed)
