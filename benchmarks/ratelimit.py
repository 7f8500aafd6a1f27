"""Rate-limit cost per request: in-process buckets, and Redis (one EVALSHA) when REDIS_URL is set.

    .venv/bin/python benchmarks/ratelimit.py [--seconds 1.0] [--callers 10000]
    REDIS_URL=redis://127.0.0.1:6379/15 .venv/bin/python benchmarks/ratelimit.py

Sequential takes on one event loop, callers picked at random; prints takes/s and
p50/p99 latency. The Redis phase writes keys under `ratelimit:v1:` in that database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.breaker import Breakers  # noqa: E402
from service.ratelimit import RateLimiter, build_rate_limiter  # noqa: E402
from service.settings import load_settings  # noqa: E402


async def measure(name: str, limiter: RateLimiter, callers: int, seconds: float) -> None:
    keys = [f"sub:user-{i}" for i in range(callers)]
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        key = random.choice(keys)
        started = time.perf_counter()
        await limiter.take(key)
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    print(
        f"{name:8} {len(latencies) / seconds:>10,.0f} takes/s  "
        f"p50 {statistics.median(latencies) * 1e6:7.1f} µs  p99 {p99 * 1e6:7.1f} µs"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--callers", type=int, default=10_000)
    args = parser.parse_args()
    urls = ["memory://"] + ([os.environ["REDIS_URL"]] if os.environ.get("REDIS_URL") else [])
    for url in urls:
        settings = load_settings(environ={}, overrides={"ratelimit": {"enabled": True, "url": url}})
        limiter = build_rate_limiter(settings.ratelimit, Breakers(settings.breaker))
        try:
            await measure(url.split(":")[0], limiter, args.callers, args.seconds)
        finally:
            await limiter.close()


if __name__ == "__main__":
    asyncio.run(main())
