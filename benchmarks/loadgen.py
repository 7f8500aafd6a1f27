"""A small HTTP/1.1 load generator: keep-alive connections, one request in flight each.

Run as its own process (so it does not share the server's event loop or GIL):

    python benchmarks/loadgen.py --host 127.0.0.1 --port 8080 --requests FILE \
        --concurrency 32 --seconds 3 --expect 200 [--total N]

FILE is JSON: a list of {"method", "path", "headers", "body"} (body a string or null),
sent in order, round-robin (with --total, each at most once: it stops after N requests or
at the end of the list, whichever comes first). It prints one JSON object: requests,
errors (answers with another status than --expect, or broken connections), req/s and
latency percentiles.

Written on asyncio's raw streams rather than an HTTP client library: a client library
costs more CPU per request than the servers measured here, and would make the load
generator, not the server, the bottleneck. It understands exactly what it needs from our
servers' answers: a status line, headers, a Content-Length body.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def build_requests(specs: list[dict[str, object]], host: str, port: int) -> list[bytes]:
    raw = []
    for spec in specs:
        body = spec.get("body")
        payload = body.encode() if isinstance(body, str) else b""
        headers = {"Host": f"{host}:{port}", **dict(spec.get("headers") or {})}  # type: ignore[call-overload]
        if payload or spec["method"] in ("POST", "PATCH", "PUT"):
            headers.setdefault("Content-Type", "application/json")
            headers["Content-Length"] = str(len(payload))
        head = f"{spec['method']} {spec['path']} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        raw.append(head.encode("latin-1") + b"\r\n" + payload)
    return raw


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def worker(
    host: str,
    port: int,
    requests: Iterator[bytes],
    deadline: float,
    expect: int,
    latencies: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            request = next(requests, None)
            if request is None:
                break
            writer.write(request)
            try:
                status = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                errors.append(0)
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            latencies.append(time.perf_counter() - started)
            if status != expect:
                errors.append(status)
    finally:
        writer.close()


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


async def run(args: argparse.Namespace) -> dict[str, object]:
    specs = json.loads(Path(args.requests).read_text(encoding="utf-8"))
    raw = build_requests(specs, args.host, args.port)
    requests = iter(raw[: args.total]) if args.total else itertools.cycle(raw)
    latencies: list[float] = []
    errors: list[int] = []
    deadline = time.perf_counter() + args.seconds
    started = time.perf_counter()
    await asyncio.gather(
        *(
            worker(args.host, args.port, requests, deadline, args.expect, latencies, errors)
            for _ in range(args.concurrency)
        )
    )
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_statuses": sorted(set(errors))[:5],
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p95_ms": percentile(ordered, 0.95) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", required=True, help="JSON file of request specs")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--total", type=int, default=0, help="send each request at most once")
    parser.add_argument("--expect", type=int, default=200, help="the status that is a success")
    args = parser.parse_args()
    json.dump(asyncio.run(run(args)), sys.stdout)


if __name__ == "__main__":
    main()
