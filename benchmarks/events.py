"""Change events: what a webhook receiver costs the API, how fast the relay delivers, and
what a page of the feed costs with a million events stored.

    .venv/bin/python benchmarks/events.py [--parts post relay feed] [--rounds 3]

- post: p50/p99 of POST /api/v1/customers (benchmarks/loadgen.py, its own process, against
  `python -m service serve` on SQLite) with no webhook, with a webhook whose receiver hangs
  (a socket that never accepts: every attempt waits the 5 s timeout), and the same with the
  breaker kept closed (`breaker.failures: 1000`: 32 attempts hang at every moment of the run).
  The variants run interleaved, `--rounds` times each, on fresh databases: on a shared
  machine compare within one run only.
- relay: events delivered per second to a receiver in its own process answering 204, on
  SQLite, for events of distinct customers (sent 32 at a time) and of one customer (sent
  one after the other, to keep their order).
- feed: what the handler of `GET /api/v1/events` does for a page (limit 20 and 100) from a
  random cursor: the SQLite store's read and the JSON body, with 1 000 and 1 000 000 events
  stored (HTTP, token and policy costs come on top, the same as for any other route).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from samples import STORED_CEP, cpf

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
RECEIVER = """
import sys
from aiohttp import web
async def hook(request):
    await request.read()
    return web.Response(status=204)
app = web.Application()
app.router.add_post("/hook", hook)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes, benchmark only


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the process for port {port} exited with {process.returncode}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


@contextlib.contextmanager
def running(command: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


@contextlib.contextmanager
def hanging_receiver() -> Iterator[str]:
    """A port that takes connections into its backlog and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4096)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- post: the API with and without a hanging receiver ---


def post_variant(folder: Path, name: str, url: str | None, breaker: int, seconds: float) -> Any:
    port = free_port()
    secret_file = folder / "secret"
    secret_file.write_text(SECRET)
    config = folder / f"{name}.yaml"
    webhooks = (
        [
            {
                "url": url,
                "name": "bench",
                "secret_file": str(secret_file),
                "types": ["customer.created"],
            }
        ]
        if url
        else []
    )
    config.write_text(
        json.dumps(
            {
                "server": {"port": port},
                "storage": {"url": f"sqlite:///{folder / (name + '.db')}"},
                "pii": {"key_file": str(folder / "pii-key")},
                "cep": {"providers": ["offline"]},
                "auth": {"local_issuer": {"key_file": str(folder / "issuer.pem")}},
                "breaker": {"failures": breaker, "cooldown_s": 30},
                "events": {"webhooks": webhooks},
            }
        )
    )
    base = [PYTHON, "-m", "service"]
    token = subprocess.run(
        [
            *base,
            "token",
            "--config",
            str(config),
            "--sub",
            "bench",
            "--scope",
            "customers:write customers:read",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    specs = [
        {
            "method": "POST",
            "path": "/api/v1/customers",
            "headers": {"Authorization": f"Bearer {token}"},
            "body": json.dumps(
                {
                    "name": f"Customer {n}",
                    "email": f"c{n}@example.com",
                    "phone": "(11) 91234-5678",
                    "cep": STORED_CEP,
                    "cpf": cpf(300_000_000 + n),
                }
            ),
        }
        for n in range(int(seconds * 3000))
    ]
    requests = folder / f"{name}.json"
    requests.write_text(json.dumps(specs))
    with running([*base, "serve", "--config", str(config)], port):
        time.sleep(1)  # let the relay start its rounds
        out = subprocess.run(
            [
                PYTHON,
                str(HERE / "loadgen.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--requests",
                str(requests),
                "--concurrency",
                "8",
                "--seconds",
                str(seconds),
                "--expect",
                "201",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return json.loads(out)


def bench_post(rounds: int, seconds: float) -> None:
    print("## POST /api/v1/customers: no webhook vs a receiver that hangs (concurrency 8)\n")
    print("| variant | round | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|")
    results: dict[str, list[Any]] = {}
    with hanging_receiver() as hanging, tempfile.TemporaryDirectory() as tmp:
        variants = [
            ("no webhook", None, 5),
            ("hanging receiver", hanging, 5),
            ("hanging, breaker kept closed", hanging, 1000),
        ]
        for round_number in range(1, rounds + 1):
            for number, (label, url, breaker) in enumerate(variants):
                folder = Path(tmp) / f"{round_number}-{number}"
                folder.mkdir()
                result = post_variant(folder, f"variant{number}", url, breaker, seconds)
                results.setdefault(label, []).append(result)
                print(
                    f"| {label} | {round_number} | {result['rps']:.0f} | {result['p50_ms']:.1f}"
                    f" | {result['p99_ms']:.1f} | {result['errors']} |",
                    flush=True,
                )
    base = statistics.median(r["p99_ms"] for r in results["no webhook"])
    for label, rows in results.items():
        p99 = statistics.median(r["p99_ms"] for r in rows)
        print(f"\nmedian p99 {label}: {p99:.1f} ms ({p99 / base:.2f} x no webhook)", end="")
    print("\n")


# --- relay: deliveries per second ---


async def fill(repository: Any, count: int, customers: int) -> None:
    from service.events.model import new_event
    from service.storage.sqlite_events import append_events
    from service.storage.sqlite_schema import transaction

    stamp = datetime.now(UTC)
    events = [
        new_event("customer.created", f"{n % customers:024x}", ("name",), stamp)
        for n in range(count)
    ]

    def write(connection: sqlite3.Connection) -> None:
        with transaction(connection):
            append_events(connection, events)

    await repository._write(write)


async def relay_rate(folder: Path, url: str, count: int, customers: int) -> float:
    from service.breaker import CircuitBreaker
    from service.events.webhooks import Endpoint, Relay, Signer
    from service.settings import WebhookSettings
    from service.settings.checks import webhook_secrets
    from service.storage import open_repository
    from service.storage.pii import Keyring, PiiCodec

    repository: Any = open_repository(
        f"sqlite:///{folder / f'relay-{customers}.db'}", "customers", PiiCodec(Keyring.generate())
    )
    await repository.ensure_schema()
    hook = WebhookSettings(url=url, types=("customer.created",), name="bench", secret_env="S")
    keys = webhook_secrets(hook, folder, {"S": SECRET})
    endpoint = Endpoint(hook, Signer(keys), CircuitBreaker("webhook:bench"))
    async with aiohttp.ClientSession() as session:
        relay = Relay(repository.events, [endpoint], session, wall_clock=lambda: datetime.now(UTC))
        await relay.start()
        await relay.close()  # driven by hand below, without the idle poll
        await fill(repository, count, customers)
        started = time.perf_counter()
        while True:
            await relay.step(endpoint)
            stats = await repository.events.stats("bench")
            if stats.pending == 0 and await repository.events.enqueue("bench", (), limit=1) == 0:
                break
        elapsed = time.perf_counter() - started
    await repository.close()
    return count / elapsed


def bench_relay(count: int) -> None:
    print(f"## Webhook deliveries per second to a local receiver (SQLite, {count} events)\n")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp, running([PYTHON, "-c", RECEIVER, str(port)], port):
        url = f"http://127.0.0.1:{port}/hook"
        for customers, label in ((count, "distinct customers"), (1, "one customer (in order)")):
            n = count if customers > 1 else min(count, 1000)
            rate = asyncio.run(relay_rate(Path(tmp), url, n, customers))
            print(f"- {label}: {rate:.0f} events/s ({n} events)")
    print()


# --- feed: a page at 1 M events ---


def load_events(path: Path, count: int) -> None:
    with sqlite3.connect(path, isolation_level=None) as connection:
        connection.execute("BEGIN")
        stamp = datetime.now(UTC) - timedelta(days=1)
        connection.executemany(
            "INSERT INTO events (id, type, customer_id, fields, occurred_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                (
                    f"evt_{n:024x}",
                    "customer.updated",
                    f"{n % 100_000:024x}",
                    '["email"]',
                    (stamp + timedelta(milliseconds=n)).isoformat(timespec="milliseconds")[:-6]
                    + "Z",
                )
                for n in range(count)
            ),
        )
        connection.execute("COMMIT")


async def feed_costs(folder: Path, count: int, runs: int) -> dict[str, tuple[float, float]]:
    from service.events.model import encode_cursor
    from service.storage import open_repository
    from service.storage.pii import Keyring, PiiCodec

    path = folder / f"feed-{count}.db"
    codec = PiiCodec(Keyring.generate())
    repository: Any = open_repository(f"sqlite:///{path}", "customers", codec)
    await repository.ensure_schema()
    await repository.close()
    load_events(path, count)
    repository = open_repository(f"sqlite:///{path}", "customers", codec)
    await repository.ensure_schema()
    rng = random.Random(count)
    costs: dict[str, tuple[float, float]] = {}
    for limit in (20, 100):
        latencies = []
        for _ in range(runs):
            after = rng.randrange(count - limit)
            started = time.perf_counter()
            page = await repository.events.page(after=after, limit=limit)
            body = json.dumps(
                {
                    "data": [event.body() for _, event in page.events],
                    "has_more": page.has_more,
                    "next_cursor": encode_cursor(page.events[-1][0]),
                }
            )
            latencies.append(time.perf_counter() - started)
            assert len(page.events) == limit and body
        ordered = sorted(latencies)
        costs[f"store page of {limit}"] = (percentile(ordered, 0.5), percentile(ordered, 0.99))
    await repository.close()
    return costs


def bench_feed(sizes: list[int], runs: int) -> None:
    print("## A page of the feed (SQLite store + JSON body), random cursors\n")
    print("| events stored | page | median µs | p99 µs |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for name, (median, p99) in asyncio.run(feed_costs(Path(tmp), size, runs)).items():
                print(f"| {size:,} | {name} | {median * 1e6:.0f} | {p99 * 1e6:.0f} |", flush=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", nargs="+", default=["post", "relay", "feed"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 1_000_000])
    args = parser.parse_args()
    print(f"events benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores\n")
    if "post" in args.parts:
        bench_post(args.rounds, args.seconds)
    if "relay" in args.parts:
        bench_relay(args.deliveries)
    if "feed" in args.parts:
        bench_feed(args.sizes, runs=2000)


if __name__ == "__main__":
    main()
