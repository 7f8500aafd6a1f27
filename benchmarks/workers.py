"""Throughput from 1 to 2 worker processes: the service (`serve --workers N`) against the
bare-aiohttp ceiling run as the same number of processes (benchmarks/ceiling.py --workers N).

    .venv/bin/python benchmarks/workers.py [--seconds 3] [--rounds 3] [--concurrency 32]
        [--size 10000]

One SQLite file of `--size` customers (CEP providers `[offline]`, no network); GET by id
and POST, each driven by benchmarks/loadgen.py (one more process). The rounds interleave
1 and 2 workers, service and ceiling, so a neighbour's load lands on every cell alike; the
table shows the median of the rounds. The load generator shares the cores with the
servers: on a 2-core machine, 2 workers compete with it, so the ceiling's own 1 -> 2
ratio is the most the service can show here.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from api import PYTHON, Bench, ceiling_specs, free_port, running

HERE = Path(__file__).resolve().parent
ROWS = (("GET by id", "GET"), ("POST", "POST"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--size", type=int, default=10_000)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores "
        f"({platform.machine()}), load average {load:.1f} at the start, Python "
        f"{platform.python_version()}, {args.seconds:g} s per cell, {args.concurrency} in "
        f"flight, median of {args.rounds} interleaved rounds",
        flush=True,
    )
    rps: dict[tuple[str, str, int], list[float]] = {}
    p99: dict[tuple[str, str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        bench = Bench(Path(tmp), args.seconds)
        config, token = bench.prepare(args.size)
        for round_ in range(args.rounds):
            for workers in (1, 2) if round_ % 2 == 0 else (2, 1):
                port = free_port()
                serve = [PYTHON, "-m", "service", "serve", "--config", str(config)]
                serve += ["--port", str(port), "--workers", str(workers)]
                with running(serve, port):
                    for row, _ in ROWS:
                        specs, expect = bench.specs(row, args.size, token, args.concurrency)
                        result = bench.load(port, specs, expect, args.concurrency)
                        rps.setdefault(("service", row, workers), []).append(result["rps"])
                        p99.setdefault(("service", row, workers), []).append(result["p99_ms"])
                        if result["errors"]:
                            print(f"  {row}, {workers} workers: {result['errors']} errors")
                port = free_port()
                ceiling = [PYTHON, str(HERE / "ceiling.py"), "--port", str(port)]
                with running([*ceiling, "--workers", str(workers)], port):
                    for row, method in ROWS:
                        expect = 201 if method == "POST" else 200
                        result = bench.load(port, ceiling_specs(method), expect, args.concurrency)
                        rps.setdefault(("ceiling", row, workers), []).append(result["rps"])
                        p99.setdefault(("ceiling", row, workers), []).append(result["p99_ms"])
            print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    print()
    print(
        "| request | 1 worker req/s | 2 workers req/s | 2 / 1 | p99 ms, 1 | p99 ms, 2 "
        "| vs ceiling, 1 | vs ceiling, 2 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row, _ in ROWS:
        for who in ("service", "ceiling"):
            one, two = (statistics.median(rps[(who, row, n)]) for n in (1, 2))
            if who == "service":
                c1, c2 = (statistics.median(rps[("ceiling", row, n)]) for n in (1, 2))
                versus = f"{one / c1:.0%} | {two / c2:.0%}"
            else:
                versus = "100% | 100%"
            tail = " | ".join(f"{statistics.median(p99[(who, row, n)]):.1f}" for n in (1, 2))
            label = row if who == "service" else f"ceiling {row.split()[0]}"
            print(f"| {label} | {one:,.0f} | {two:,.0f} | {two / one:.2f}x | {tail} | {versus} |")


if __name__ == "__main__":
    main()
