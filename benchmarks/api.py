"""The HTTP benchmark: the service on the embedded profile against the bare-aiohttp ceiling.

    .venv/bin/python benchmarks/api.py [--seconds 2] [--sizes 10000 100000]
        [--concurrency 1 8 32 128] [--out bench/RESULTS.md]

For each size it bulk-loads that many customers into a fresh SQLite file
(`python -m service db import`), starts the service (`python -m service serve`, CEP
providers `[offline]`, so no network) and the ceiling app (benchmarks/ceiling.py) as their
own processes, and drives both with benchmarks/loadgen.py (a third process) at each
concurrency. It prints one Markdown table: req/s, p50/p95/p99, errors and the ratio to the
ceiling (GET rows against the ceiling's GET, POST and PATCH against its POST and PATCH).
The ceiling is measured right before the rows it is compared with, in the same run: on a
shared machine only ratios mean anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import socket
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


@contextlib.contextmanager
def running(command: list[str], port: int) -> Iterator[None]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(port, process)
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy (--profile) writes its file on SIGINT
        process.wait(timeout=30)


class Bench:
    def __init__(self, folder: Path, seconds: float) -> None:
        self.folder = folder
        self.seconds = seconds
        self.serial = 0  # keeps POST bodies unique across cells

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
        token = self.service("token", "--sub", "bench", "--scope", SCOPES, config=config)
        return config, token.strip()

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
        bodies = []
        for _ in range(int(self.seconds * 4000)):  # more than a POST cell can send
            self.serial += 1
            bodies.append(
                {
                    "method": "POST",
                    "path": base,
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
        return bodies, 201

    def load(self, port: int, specs: list[Any], expect: int, concurrency: int) -> dict[str, Any]:
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
            str(self.seconds),
            "--expect",
            str(expect),
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


def cell(label: str, result: dict[str, Any], ceiling: float | None) -> str:
    ratio = f"{result['rps'] / ceiling:.0%}" if ceiling else "100%"
    return (
        f"| {label} | {result['rps']:,.0f} | {result['p50_ms']:.1f} | {result['p95_ms']:.1f} "
        f"| {result['p99_ms']:.1f} | {result['errors']} | {ratio} |"
    )


def run(args: argparse.Namespace) -> list[str]:
    cores = os.cpu_count()
    lines = [
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cores} cores ({platform.machine()}), "
        f"Python {platform.python_version()}, {args.seconds:g} s per cell, "
        "load generator, server and ceiling as three processes on the same cores.",
        "",
        "| request | req/s | p50 ms | p95 ms | p99 ms | errors | vs ceiling |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for line in lines:
        print(line, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        bench = Bench(Path(tmp), args.seconds)
        ceiling_port = free_port()
        ceiling_cmd = [PYTHON, str(HERE / "ceiling.py"), "--port", str(ceiling_port)]
        with running(ceiling_cmd, ceiling_port):
            for size in args.sizes:
                config, token = bench.prepare(size)
                port = free_port()
                serve = serve_command(config, port, args.profile and args.profile / f"{size}.txt")
                with running(serve, port):
                    for concurrency in args.concurrency:
                        heading = f"| **{size:,} stored, {concurrency} in flight** | | | | | | |"
                        lines.append(heading)
                        print(heading, flush=True)
                        ceilings = {}
                        for method in ("GET", "POST", "PATCH"):
                            result = bench.load(
                                ceiling_port,
                                ceiling_specs(method),
                                201 if method == "POST" else 200,
                                concurrency,
                            )
                            ceilings[method] = result["rps"]
                            lines.append(cell(f"ceiling {method}", result, None))
                            print(lines[-1], flush=True)
                        for row in args.rows:
                            specs, expect = bench.specs(row, size, token, concurrency)
                            result = bench.load(port, specs, expect, concurrency)
                            lines.append(cell(row, result, ceilings[CEILING_OF.get(row, "GET")]))
                            print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
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
