"""Offline CEP lookup speed: the provider alone, and the resolver with a warm memory cache.

    .venv/bin/python benchmarks/cep_offline.py [--seconds 1.0]

Each phase runs sequential lookups on one event loop for about `--seconds` and prints
lookups/s and p50/p99/max latency. The "thread hop" phase times `asyncio.to_thread` on a
no-op: what running each lookup in a thread would add on top of the lookup itself.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp

from service.breaker import Breakers
from service.cep.offline import OfflineProvider, resolve_db_path
from service.cep.resolver import build_cep_resolver
from service.settings import load_settings

SAMPLE = 20_000


def sample_ceps(db_path: Path, rng: random.Random) -> tuple[list[str], list[str]]:
    """Random CEPs that exist, and random 8-digit numbers that do not."""
    conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
    try:
        (count,) = conn.execute("SELECT count(*) FROM ceps").fetchone()
        rows = conn.execute("SELECT cep FROM ceps ORDER BY random() LIMIT ?", (SAMPLE,)).fetchall()
        hits = [f"{cep:08d}" for (cep,) in rows]
        misses: list[str] = []
        while len(misses) < SAMPLE:
            cep = rng.randrange(100_000_000)
            if conn.execute("SELECT 1 FROM ceps WHERE cep = ?", (cep,)).fetchone() is None:
                misses.append(f"{cep:08d}")
    finally:
        conn.close()
    print(f"directory: {db_path} ({count:,} CEPs)")
    rng.shuffle(hits)
    return hits, misses


async def measure(
    label: str, call: Callable[[str], Awaitable[object]], ceps: Sequence[str], seconds: float
) -> None:
    latencies: list[int] = []
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    i = 0
    while time.perf_counter() < deadline:
        cep = ceps[i % len(ceps)]
        t0 = time.perf_counter_ns()
        await call(cep)
        latencies.append(time.perf_counter_ns() - t0)
        i += 1
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{label:<34} {len(latencies) / elapsed:>10,.0f} lookups/s   "
        f"p50 {q[49] / 1000:7.1f} µs   p99 {q[98] / 1000:7.1f} µs   "
        f"max {max(latencies) / 1000:8.1f} µs"
    )


async def main(seconds: float) -> None:
    rng = random.Random(1234)
    settings = load_settings(environ={}, overrides={"cep": {"providers": ["offline"]}})
    db_path = resolve_db_path(settings.cep.offline, Path.cwd())
    hits, misses = sample_ceps(db_path, rng)

    provider = OfflineProvider(db_path)
    try:
        await measure("offline provider, hits", provider.lookup, hits, seconds)
        await measure("offline provider, misses", provider.lookup, misses, seconds)
    finally:
        await provider.close()

    async def thread_hop(cep: str) -> object:
        return await asyncio.to_thread(len, cep)

    await measure("thread hop alone (to_thread no-op)", thread_hop, hits, seconds)

    async with aiohttp.ClientSession() as session:
        resolver = build_cep_resolver(
            settings.cep,
            session,
            offline_base_dir=Path.cwd(),
            breakers=Breakers(settings.breaker),
        )
        try:
            warm = hits[:5_000]
            for cep in warm:
                await resolver.resolve(cep)
            await measure("resolver, warm memory cache", resolver.resolve, warm, seconds)
        finally:
            await resolver.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per phase (default 1.0)")
    asyncio.run(main(parser.parse_args().seconds))
