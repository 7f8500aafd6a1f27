"""The HTTP benchmark: the service against the bare-aiohttp ceiling, its floor and a peer.

The service runs on the embedded profile; the floor is its design's GET by id with nothing
else (benchmarks/floor.py), the peer a tuned FastAPI app doing the same (peer_fastapi.py).

    .venv/bin/python benchmarks/api.py [--seconds 2] [--rounds 3] [--sizes 10000 100000]
        [--concurrency 1 8 32 128] [--burst 10000] [--out var/bench/RESULTS.md]

For each size it bulk-loads that many customers into a fresh SQLite file
(`python -m service db import`), starts the service (`python -m service serve`, CEP
providers `[offline]`, so no network), the ceiling app (benchmarks/ceiling.py), the floor
(benchmarks/floor.py: the same GET by id on bare aiohttp, doing only what no GET of this
design can skip) and, when the `bench` extra is installed, the FastAPI peer
(benchmarks/peer_fastapi.py, the same GET by id on the same file) as their own processes,
and drives them with benchmarks/loadgen.py
(another process). Every cell runs once per round and the rounds are interleaved (round 1
of every cell, then round 2...), so a neighbour's burst on the shared cores spreads over
all rows; the table shows the median of the rounds. Columns: req/s, p50/p95/p99, errors,
the server's CPU time per request (user + system from /proc, all threads: req/s alone hides
a load generator that is the bottleneck) and the ratio to the ceiling in the same round
(GET rows against the ceiling's GET, POST and PATCH against its POST and PATCH). Then it
POSTs `--burst` new customers and measures GET by id again: a long-running server always
has had writes. On a shared machine only ratios mean anything.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from samples import STORED_CEP, cpf, customer

from service.storage.base import encode_cursor

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
SCOPES = "customers:read customers:write customers:pii"
ROWS = ("GET by id", "GET page of 20", "GET ?email=", "POST", "PATCH", "GET without token")
CEILING_OF = {"POST": "POST", "PATCH": "PATCH"}  # every other row: the ceiling's GET
PEER_ROW = "FastAPI peer: GET by id"
FLOOR_ROW = "floor: GET by id"
AFTER_BURST_ROW = "GET by id after {burst:,} writes"
REQUESTS_PER_CELL = 20_000  # distinct requests cycled through by the load generator


def stored_customer(number: int) -> dict[str, Any]:
    """A line of the `db import` file: customer `number` with its id and timestamps."""
    stamp = "2026-01-01T12:00:00+00:00"
    return {
        "id": f"{number + 1:024x}",
        **customer(number),
        "created_at": stamp,
        "updated_at": stamp,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1).read()
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants (py-spy runs the server as
    its child), every thread included (SQLite's writer thread too)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(child)) for child in children)


@contextlib.contextmanager
def running(command: list[str], port: int) -> Iterator[int]:
    """Run a server until the block ends; yields its pid."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(port, process)
        yield process.pid
    finally:
        process.send_signal(signal.SIGINT)  # py-spy (--profile) writes its file on SIGINT
        process.wait(timeout=30)


class Bench:
    def __init__(self, folder: Path, seconds: float) -> None:
        self.folder = folder
        self.seconds = seconds
        self.serial = 0  # keeps POST bodies unique across cells
        self.token = ""

    def service(self, command_name: str, *args: str, config: Path) -> str:
        command = [PYTHON, "-m", "service", command_name, "--config", str(config), *args]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    def prepare(self, size: int) -> tuple[Path, str]:
        """A config on a fresh database holding `size` customers, and a token for it."""
        config = self.folder / f"{size}.yaml"
        config.write_text(
            json.dumps(  # YAML is a superset of JSON
                {
                    "storage": {"url": f"sqlite:///{self.folder / f'{size}.db'}"},
                    "cep": {"providers": ["offline"]},
                    "auth": {"local_issuer": {"key_file": str(self.folder / "issuer.pem")}},
                }
            )
        )
        lines = self.folder / f"{size}.jsonl"
        with lines.open("w", encoding="utf-8") as out:
            for number in range(size):
                out.write(json.dumps(stored_customer(number), ensure_ascii=False) + "\n")
        self.service("db", "import", str(lines), config=config)
        self.token = self.service(
            "token", "--sub", "bench", "--scope", SCOPES, config=config
        ).strip()
        return config, self.token

    def specs(self, row: str, size: int, token: str, concurrency: int) -> tuple[list[Any], int]:
        """Request specs for one cell, and the status that counts as a success."""
        rng = random.Random(f"{row}{size}{concurrency}")
        auth = {"Authorization": f"Bearer {token}"}
        # More distinct ids than the policy engine's decision cache holds (4096), so a GET by
        # id pays the policy evaluation as a read of a new customer does.
        numbers = [rng.randrange(size) for _ in range(REQUESTS_PER_CELL)]
        base = "/api/v1/customers"
        if row == "GET by id":
            return [
                {"method": "GET", "path": f"{base}/{n + 1:024x}", "headers": auth} for n in numbers
            ], 200
        if row == "GET without token":
            return [{"method": "GET", "path": f"{base}/{n + 1:024x}"} for n in numbers], 401
        if row == "GET page of 20":
            return [
                {
                    "method": "GET",
                    "path": f"{base}?limit=20&cursor={encode_cursor(f'{n:024x}')}",
                    "headers": auth,
                }
                for n in numbers
            ], 200
        if row == "GET ?email=":
            return [
                {
                    "method": "GET",
                    "path": f"{base}?email=customer{n}%40example.com",
                    "headers": auth,
                }
                for n in numbers
            ], 200
        if row == "PATCH":
            return [
                {
                    "method": "PATCH",
                    "path": f"{base}/{n + 1:024x}",
                    "headers": auth,
                    "body": json.dumps({"name": f"Renamed {n}", "number": str(n % 97)}),
                }
                for n in numbers
            ], 200
        return self.new_customers(int(self.seconds * 6000)), 201  # more than a cell can send

    def new_customers(self, count: int) -> list[Any]:
        """`count` POSTs of customers no earlier POST of this run sent."""
        auth = {"Authorization": f"Bearer {self.token}"}
        bodies = []
        for _ in range(count):
            self.serial += 1
            bodies.append(
                {
                    "method": "POST",
                    "path": "/api/v1/customers",
                    "headers": auth,
                    "body": json.dumps(
                        {
                            "name": f"New customer {self.serial}",
                            "email": f"new{self.serial}@example.com",
                            "phone": "(11) 91234-5678",
                            "cep": STORED_CEP,
                            "cpf": cpf(500_000_000 + self.serial),
                        }
                    ),
                }
            )
        return bodies

    def load(
        self, port: int, specs: list[Any], expect: int, concurrency: int, total: int = 0
    ) -> dict[str, Any]:
        path = self.folder / "specs.json"
        path.write_text(json.dumps(specs))
        command = [
            PYTHON,
            str(HERE / "loadgen.py"),
            "--port",
            str(port),
            "--requests",
            str(path),
            "--concurrency",
            str(concurrency),
            "--seconds",
            str(600 if total else self.seconds),
            "--expect",
            str(expect),
            "--total",
            str(total),
        ]
        result: dict[str, Any] = json.loads(
            subprocess.run(command, check=True, capture_output=True, text=True).stdout
        )
        return result


def serve_command(config: Path, port: int, flame: Path | None) -> list[str]:
    """The service's command line; under py-spy (raw folded stacks into `flame`) if given."""
    serve = [PYTHON, "-m", "service", "serve", "--config", str(config), "--port", str(port)]
    if flame is None:
        return serve
    return ["py-spy", "record", "--format", "raw", "--rate", "250", "-o", str(flame), "--", *serve]


def ceiling_specs(method: str) -> list[dict[str, Any]]:
    if method == "GET":
        return [{"method": "GET", "path": "/api/v1/customers/6750c0ffee0000000000beef"}]
    body = json.dumps({"name": "Maria", "email": "maria@example.com"})
    path = "/api/v1/customers" if method == "POST" else "/api/v1/customers/6750c0ffee0000000000beef"
    return [{"method": method, "path": path, "body": body}]


def has_peer() -> bool:
    return all(importlib.util.find_spec(name) for name in ("fastapi", "uvicorn"))


class Cell:
    """One row at one concurrency: what to send where, and one measurement per round."""

    def __init__(
        self, label: str, port: int, pid: int, make: Any, expect: int, ceiling: str | None
    ) -> None:
        self.label, self.port, self.pid, self.make, self.expect = label, port, pid, make, expect
        self.ceiling = ceiling  # the ceiling cell's method this row is a ratio to; None: it is one
        self.rounds: list[dict[str, Any]] = []

    def measure(self, bench: Bench, concurrency: int) -> dict[str, Any]:
        specs = self.make()
        cpu = cpu_seconds(self.pid)
        result = bench.load(self.port, specs, self.expect, concurrency)
        result["cpu_us"] = (cpu_seconds(self.pid) - cpu) * 1e6 / max(result["requests"], 1)
        self.rounds.append(result)
        return result


def median_line(cell: Cell, ceiling: Cell | None) -> str:
    def med(key: str) -> float:
        return float(statistics.median(result[key] for result in cell.rounds))

    ratio = "100%"
    if ceiling is not None:  # the ratio to the ceiling of the same round, then the median
        ratios = [
            mine["rps"] / theirs["rps"]
            for mine, theirs in zip(cell.rounds, ceiling.rounds, strict=True)
        ]
        ratio = f"{statistics.median(ratios):.0%}"
    errors = sum(result["errors"] for result in cell.rounds)
    return (
        f"| {cell.label} | {med('rps'):,.0f} | {med('p50_ms'):.1f} | {med('p95_ms'):.1f} "
        f"| {med('p99_ms'):.1f} | {med('cpu_us'):,.0f} | {errors} | {ratio} |"
    )


def run(args: argparse.Namespace) -> list[str]:
    cores = os.cpu_count()
    peer = has_peer()
    lines = [
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cores} cores ({platform.machine()}), "
        f"Python {platform.python_version()}, {args.seconds:g} s per cell, median of "
        f"{args.rounds} interleaved rounds; load generator and servers as separate processes "
        "on the same cores." + ("" if peer else " (No FastAPI peer: install the `bench` extra.)"),
        "",
        "| request | req/s | p50 ms | p95 ms | p99 ms | CPU µs/req | errors | vs ceiling |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for line in lines:
        print(line, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        bench = Bench(Path(tmp), args.seconds)
        ceiling_port = free_port()
        ceiling_cmd = [PYTHON, str(HERE / "ceiling.py"), "--port", str(ceiling_port)]
        with running(ceiling_cmd, ceiling_port) as ceiling_pid:
            ceiling = (ceiling_port, ceiling_pid)
            for size in args.sizes:
                for line in measure_size(bench, args, size, ceiling, peer):
                    lines.append(line)
                    print(line, flush=True)
    return lines


def measure_size(
    bench: Bench, args: argparse.Namespace, size: int, ceiling: tuple[int, int], peer: bool
) -> list[str]:
    """Every row at every concurrency for one stored size, then the row after the burst."""
    methods = ["GET", *sorted({CEILING_OF[row] for row in args.rows if row in CEILING_OF})]
    config, token = bench.prepare(size)
    port = free_port()
    with contextlib.ExitStack() as servers:
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
        serve = serve_command(config, port, args.profile and args.profile / f"{size}.txt")
        pid = servers.enter_context(running(serve, port))

        def started(script: str) -> tuple[int, int]:
            """(port, pid) of a benchmark server serving the same file (floor, peer)."""
            port = free_port()
            command = [PYTHON, str(HERE / script), "--config", str(config), "--port", str(port)]
            return port, servers.enter_context(running(command, port))

        floor = started("floor.py")
        peer_server = started("peer_fastapi.py") if peer else None

        def ceiling_cell(method: str) -> Cell:
            expect = 201 if method == "POST" else 200
            return Cell(f"ceiling {method}", *ceiling, lambda: ceiling_specs(method), expect, None)

        def service_cell(row: str, concurrency: int, label: str = "") -> Cell:
            expect = bench.specs(row, size, token, 1)[1] if row != "POST" else 201
            return Cell(
                label or row,
                port,
                pid,
                lambda: bench.specs(row, size, token, concurrency)[0],
                expect,
                CEILING_OF.get(row, "GET"),
            )

        def cells_at(concurrency: int) -> list[Cell]:
            cells = [ceiling_cell(method) for method in methods]
            get = service_cell("GET by id", concurrency)
            cells.append(Cell(FLOOR_ROW, *floor, get.make, 200, "GET"))
            if peer_server is not None:
                cells.append(Cell(PEER_ROW, *peer_server, get.make, 200, "GET"))
            return cells + [service_cell(row, concurrency) for row in args.rows]

        matrix = [(concurrency, cells_at(concurrency)) for concurrency in args.concurrency]
        for number in range(args.rounds):
            for concurrency, cells in matrix:
                for cell in cells:
                    result = cell.measure(bench, concurrency)
                    print(
                        f"  round {number + 1}, {size:,} stored, {concurrency} in flight: "
                        f"{cell.label} {result['rps']:,.0f} req/s",
                        file=sys.stderr,
                        flush=True,
                    )
        if args.burst:
            burst = bench.load(port, bench.new_customers(args.burst), 201, 32, args.burst)
            print(f"  burst: {burst['requests']:,} writes", file=sys.stderr, flush=True)
            label = AFTER_BURST_ROW.format(burst=args.burst)
            after = [ceiling_cell("GET"), service_cell("GET by id", 32, label)]
            for _ in range(args.rounds):
                for cell in after:
                    cell.measure(bench, 32)
            matrix.append((32, after))
    lines = []
    for concurrency, cells in matrix:
        lines.append(f"| **{size:,} stored, {concurrency} in flight** | | | | | | | |")
        ceilings = {cell.label.split()[-1]: cell for cell in cells if cell.ceiling is None}
        lines += [median_line(c, ceilings[c.ceiling] if c.ceiling else None) for c in cells]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument(
        "--burst", type=int, default=10_000, help="POSTs before the last GET row (0: none)"
    )
    parser.add_argument(
        "--profile", type=Path, help="run the service under py-spy, folded stacks into this folder"
    )
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()
    lines = run(args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
