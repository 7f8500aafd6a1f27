"""End-to-end API throughput on the embedded profile: HTTP, JWT, policy, validators, storage.

    .venv/bin/python benchmarks/api.py [--seconds 3] [--concurrency 16]

Starts the real app (create_app) on 127.0.0.1 with a fake ViaCEP on 127.0.0.1, then for
about `--seconds` per phase keeps `--concurrency` requests in flight and prints requests/s
and p50/p99 latency. Phases: a public probe (HTTP stack only), a request that stops after
authentication and the policy decision (no database), POST (registration: 6 validators,
CEP from the warm cache after the first), GET one, GET a page of 20. Numbers depend on the
machine; compare runs on one. The client runs in the same process and shares its CPU.
mongomock has no real indexes: its inserts and finds slow down as the collection grows.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.app import create_app  # noqa: E402
from service.auth.local_issuer import issue_local_token  # noqa: E402
from service.settings import load_settings  # noqa: E402
from tests.factories import make_cpf  # noqa: E402
from tests.fakes import FakeViaCep  # noqa: E402


async def phase(
    name: str,
    seconds: float,
    concurrency: int,
    call: Callable[[int], Awaitable[int]],
    expected: int,
) -> None:
    counter = itertools.count()
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = await call(next(counter))
            latencies.append(time.perf_counter() - started)
            failures += status != expected

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{name:<22} {len(latencies) / elapsed:8.0f} req/s   p50 {q[49] * 1000:6.2f} ms"
        f"   p99 {q[98] * 1000:6.2f} ms   n={len(latencies)}  unexpected={failures}"
    )


async def main(seconds: float, concurrency: int) -> None:
    viacep = FakeViaCep()
    viacep_server = TestServer(viacep.make_app(), host="127.0.0.1")
    await viacep_server.start_server()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            environ={},
            overrides={
                "cep": {"viacep": {"base_url": str(viacep_server.make_url("")).rstrip("/")}},
                "auth": {"local_issuer": {"key_file": f"{tmp}/key.pem"}},
                "storage": {"url": f"sqlite:///{tmp}/customers.db"},
            },
        )
        scopes = ["customers:read", "customers:write", "customers:pii"]
        token = issue_local_token(settings, "bench", scopes, [], 3600)
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}/api/v1/customers"
        headers = {"Authorization": f"Bearer {token}"}
        created: list[str] = []
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(headers=headers, connector=connector) as http:

            async def post(i: int) -> int:
                body = {
                    "name": f"Customer {i}",
                    "email": f"c{i}@example.com",
                    "phone": "(11) 91234-5678",
                    "cep": "01001-000",
                    "cpf": make_cpf(100_000_000 + i),
                }
                async with http.post(base, json=body) as response:
                    if response.status == 201:
                        created.append((await response.json())["id"])
                    return response.status

            async def get_one(i: int) -> int:
                async with http.get(f"{base}/{created[i % len(created)]}") as response:
                    await response.read()
                    return response.status

            async def get_live(i: int) -> int:
                async with http.get(f"http://127.0.0.1:{port}/health/live") as response:
                    await response.read()
                    return response.status

            async def get_no_db(i: int) -> int:
                # A malformed id is a 404 decided without a database call: HTTP + JWT + policy.
                async with http.get(f"{base}/not-an-id") as response:
                    await response.read()
                    return response.status

            async def get_page(i: int) -> int:
                async with http.get(base, params={"limit": "20"}) as response:
                    await response.read()
                    return response.status

            print(f"concurrency {concurrency}, {seconds:.0f} s per phase")
            await phase("GET /health/live", seconds, concurrency, get_live, 200)
            await phase("GET (auth+policy, no DB)", seconds, concurrency, get_no_db, 404)
            await phase("POST /customers", seconds, concurrency, post, 201)
            await phase("GET /customers/{id}", seconds, concurrency, get_one, 200)
            await phase("GET /customers?limit=20", seconds, concurrency, get_page, 200)
            print(f"customers stored: {len(created)}; ViaCEP calls: {viacep.calls}")
        await runner.cleanup()
    await viacep_server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.concurrency))
