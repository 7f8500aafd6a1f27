"""Repository cost per operation as the number of stored customers grows, per adapter.

    .venv/bin/python benchmarks/storage.py [--sizes 1000 10000 100000] [--adapters sqlite mongomock]

For each adapter and size: bulk-load that many customers (`restore`, in batches), half of
them closed (`--closed`, the share), then time insert, get by id, page of 20 from a random
position (all statuses, as a `customers:restricted` caller sees them, and active only, as
everyone else does), filter by email and exists, and print median and p99 in milliseconds.
The active-only page is served by the (status, id) index: its cost stays flat as closed
customers accumulate. mongomock runs up to 10k only: it scans on every
query. SQLite runs on a fresh file in a temporary folder. Set MONGODB_URL to add a real
MongoDB. Numbers depend on the machine; compare runs on one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from samples import customer

from service.customers.model import now
from service.storage import open_repository
from service.storage.base import Change, CustomerRepository, encode_cursor, new_id
from service.storage.pii import Keyring, PiiCodec

OPERATIONS = (
    "insert",
    "get by id",
    "page of 20",
    "page of 20, active only",
    "filter by email",
    "exists",
)
MONGOMOCK_MAX = 10_000


def _closed(n: int, share: float) -> bool:
    """Spread the closed customers evenly over creation order."""
    return int((n + 1) * share) > int(n * share)


def _oldest_closed(size: int, share: float) -> Callable[[int], bool]:
    """The oldest customers closed: what years of churn leave at the start of the id order."""
    return lambda n: n < size * share


async def bulk_load(
    repository: CustomerRepository,
    size: int,
    closed: float,
    is_closed: Callable[[int], bool] | None = None,
) -> list[str]:
    is_closed = is_closed or (lambda n: _closed(n, closed))
    ids: list[str] = []
    for start in range(0, size, 1000):
        stamp = now()
        ended = {"status": "closed", "closed_at": stamp, "purge_after": stamp + timedelta(3653)}
        batch = [
            {
                **customer(n),
                "id": new_id(),
                "created_at": stamp,
                "updated_at": stamp,
                **(ended if is_closed(n) else {}),
            }
            for n in range(start, min(start + 1000, size))
        ]
        await repository.restore(batch, Change.of("create", "benchmark"))
        ids += [c["id"] for c in batch]
    return ids


async def timed(runs: int, call: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    latencies = []
    for i in range(runs):
        started = time.perf_counter()
        await call(i)
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return statistics.median(latencies) * 1000, p99 * 1000


async def measure(url: str, size: int, runs: int, closed: float) -> dict[str, tuple[float, float]]:
    codec = PiiCodec(Keyring.generate())
    repository = open_repository(url, f"bench_{uuid.uuid4().hex[:8]}", codec)
    await repository.ensure_schema()
    try:
        ids = await bulk_load(repository, size, closed)
        pick = random.Random(size).choice
        numbers = iter(range(size, size + runs))
        return {
            "insert": await timed(
                runs,
                lambda _: repository.insert(
                    customer(next(numbers)), Change.of("create", "benchmark")
                ),
            ),
            "get by id": await timed(runs, lambda _: repository.get(pick(ids))),
            "page of 20": await timed(
                runs, lambda _: repository.page(limit=20, cursor=encode_cursor(pick(ids)))
            ),
            "page of 20, active only": await timed(
                runs,
                lambda _: repository.page(
                    limit=20, cursor=encode_cursor(pick(ids)), statuses=["active"]
                ),
            ),
            "filter by email": await timed(
                runs,
                lambda i: repository.page(
                    limit=20, filters={"email": f"customer{(i * 7919) % size}@example.com"}
                ),
            ),
            "exists": await timed(
                runs, lambda i: repository.exists("cpf", f"{(i * 7919) % size:011d}")
            ),
        }
    finally:
        await repository.close()


async def first_active_page(folder: Path, size: int, share: float, rounds: int) -> str:
    """The first page of active customers when the oldest `share` are closed, through the
    (status, id) index and, for comparison, through the primary key with the index
    disabled (`+status`): interleaved rounds, medians in ms."""
    url = f"sqlite:///{folder / f'oldest-closed-{size}.db'}"
    repository = open_repository(url, "bench", PiiCodec(Keyring.generate()))
    await repository.ensure_schema()
    await bulk_load(repository, size, share, _oldest_closed(size, share))
    await repository.close()
    query = "SELECT id FROM customers WHERE {} = 'active' ORDER BY id LIMIT 21"
    timings: dict[str, list[float]] = {"index": [], "scan": []}
    with sqlite3.connect(folder / f"oldest-closed-{size}.db") as connection:
        for _ in range(rounds):
            for name, column in (("index", "status"), ("scan", "+status")):
                started = time.perf_counter()
                connection.execute(query.format(column)).fetchall()
                timings[name].append((time.perf_counter() - started) * 1000)
    index, scan = (statistics.median(timings[name]) for name in ("index", "scan"))
    return f"| {size:,} | {share:.0%} | {index:.3f} | {scan:.3f} | {scan / index:.0f}x |"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--adapters", nargs="+", default=["sqlite", "mongomock"])
    parser.add_argument("--runs", type=int, default=1000, help="timed calls per operation")
    parser.add_argument("--closed", type=float, default=0.5, help="share of closed customers")
    args = parser.parse_args()
    adapters = list(args.adapters) + (["mongodb"] if os.environ.get("MONGODB_URL") else [])
    print(f"{args.closed:.0%} of the stored customers closed")
    print(f"| adapter | stored | {' | '.join(OPERATIONS)} |  (ms: median / p99)")
    print("|---|---:|" + "---:|" * len(OPERATIONS))
    with tempfile.TemporaryDirectory() as folder:
        for adapter in adapters:
            for size in args.sizes:
                if adapter == "mongomock" and size > MONGOMOCK_MAX:
                    continue
                url = {
                    "sqlite": f"sqlite:///{Path(folder) / f'{size}.db'}",
                    "mongomock": "mongomock://",
                    "mongodb": os.environ.get("MONGODB_URL", ""),
                }[adapter]
                runs = args.runs if adapter != "mongomock" else max(20, args.runs // 20)
                figures = await measure(url, size, runs, args.closed)
                cells = " | ".join(f"{m:.3f} / {p:.3f}" for m, p in figures.values())
                print(f"| {adapter} | {size:,} | {cells} |", flush=True)
        if "sqlite" in adapters:
            print("\nSQLite, first page of active customers, the oldest closed (ms, median)")
            print("| stored | closed | (status, id) index | primary key + filter | ratio |")
            print("|---:|---:|---:|---:|---:|")
            for size in args.sizes:
                print(await first_active_page(Path(folder), size, 0.9, 200), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
