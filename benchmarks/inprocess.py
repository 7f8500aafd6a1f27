"""GET by id without the kernel: the real app and connection protocol, in-memory transports.

The service's app is served by the runner `serve` uses (its request handler included), but
each connection's transport is an object in this process: requests are fed to the
protocol as bytes, responses land in a callback. So the CPU time per request (this
process, all threads: the writer thread's audit appends included) is what the service's
Python and SQLite cost, without the sockets and the load generator's wake-ups that an HTTP
benchmark on the same cores adds (docs/performance.md, part 8).

    .venv/bin/python benchmarks/inprocess.py [--requests 30000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from api import Bench

from service.app import create_app
from service.runtime import service_runner
from service.settings import load_settings

STORED = 10_000


class MemoryTransport(asyncio.Transport):
    """What a connection's protocol writes to, handed whole to `received`."""

    def __init__(self, received: Any) -> None:
        super().__init__()
        self._received = received
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._received(bytes(data))

    def writelines(self, chunks: Any) -> None:
        self._received(b"".join(chunks))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def wire(spec: dict[str, Any]) -> bytes:
    """A load generator's request spec (benchmarks/api.py) as HTTP/1.1 bytes (no body)."""
    headers = "".join(f"{name}: {value}\r\n" for name, value in spec["headers"].items())
    return f"{spec['method']} {spec['path']} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n".encode()


async def measure(
    config: Path, requests: list[bytes], goal: int, concurrency: int
) -> dict[str, Any]:
    settings = load_settings([str(config)])
    runner = service_runner(create_app(settings), settings)
    await runner.setup()
    assert runner.server is not None
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"answered": 0, "goal": 0, "statuses": {}, "done": asyncio.Event()}

    def connection() -> Any:
        protocol = runner.server()  # type: ignore[misc]

        def received(data: bytes) -> None:
            if not data.startswith(b"HTTP/"):
                return  # a body written apart from its head
            status = data[9:12].decode()
            state["statuses"][status] = state["statuses"].get(status, 0) + 1
            state["answered"] += 1
            if state["answered"] >= state["goal"]:
                state["done"].set()
            else:  # the next request on this connection, once this response is out
                loop.call_soon(protocol.data_received, requests[state["answered"] % len(requests)])

        protocol.connection_made(MemoryTransport(received))
        return protocol

    protocols = [connection() for _ in range(concurrency)]

    async def run(goal: int) -> None:
        state.update(answered=0, goal=goal, statuses={})
        state["done"].clear()
        for number, protocol in enumerate(protocols):
            protocol.data_received(requests[number])
        await state["done"].wait()

    await run(3_000)  # warm-up: caches, the first audit flush
    await asyncio.sleep(1.5)
    cpu, wall = time.process_time(), time.perf_counter()
    await run(goal)
    wall = time.perf_counter() - wall
    await asyncio.sleep(1.2)  # the reads' audit flush runs, and its CPU counts
    cpu = time.process_time() - cpu
    for protocol in protocols:
        protocol.connection_lost(None)
    await runner.cleanup()
    answered = state["answered"]  # a few past the goal: those in flight when it was reached
    return {
        "cpu_us": cpu / answered * 1e6,
        "loop_wall_us": wall / answered * 1e6,
        "statuses": state["statuses"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        bench = Bench(Path(tmp), 1)
        config, token = bench.prepare(STORED)
        specs, _ = bench.specs("GET by id", STORED, token, args.concurrency)
        requests = [wire(spec) for spec in specs]
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(measure(config, requests, args.requests, args.concurrency))
    print(
        f"GET by id in process, {STORED:,} stored, {args.concurrency} connections, "
        f"{args.requests:,} requests: {result['cpu_us']:.1f} CPU µs per request (all "
        f"threads), {result['loop_wall_us']:.1f} µs of wall time; statuses {result['statuses']}"
    )


if __name__ == "__main__":
    main()
