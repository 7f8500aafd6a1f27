"""What the audit trail costs: HTTP throughput with `audit.reads: pii` against `none`, the
journal's cost per insert, and the audit store's size per million entries.

    .venv/bin/python benchmarks/audit.py [--seconds 3] [--rounds 3] [--concurrency 32]
        [--size 10000] [--entries 100000]

1. HTTP (SQLite, embedded profile, offline CEP): one database of `--size` customers served
   by two processes at once, one with `audit.reads: pii`, one with `none`. Rounds
   interleave the two (GET by id with a `customers:pii` token, then POST), with a pause
   after each cell so the pii server's once-a-second flush lands in its own cell. The
   ratio pii/none per round is what counts: on a shared machine only ratios in one run
   mean anything.
2. Journal: `repository.insert` on a fresh SQLite file with the journal, and with the
   journal replaced by nothing, interleaved, sequential (each insert its own commit).
3. Size: `--entries` read entries appended in batches of 1,000 to a fresh SQLite file
   (pages used by the table and its two indexes, from `dbstat`), and the BSON size of the
   same entries as MongoDB documents (before WiredTiger compression, without indexes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import bson
from api import PYTHON, Bench, free_port, running
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from samples import customer

from service.audit.reads import ReadRecorder
from service.storage import open_repository, sqlite_audit
from service.storage import sqlite as sqlite_adapter
from service.storage.base import Change
from service.storage.journal import journal_rows
from service.storage.pii import Keyring, PiiCodec

MODES = ("none", "control", "pii")


def http(args: argparse.Namespace, folder: Path) -> list[str]:
    bench = Bench(folder, args.seconds)
    config, token = bench.prepare(args.size)
    base = json.loads(config.read_text())
    ports = {}
    configs = {}
    for mode in MODES:  # `control` is a second `none`: its ratio shows the noise
        configs[mode] = folder / f"{mode}.yaml"
        reads = "none" if mode == "control" else mode
        configs[mode].write_text(json.dumps({**base, "audit": {"reads": reads}}))
        ports[mode] = free_port()
    lines = [
        f"HTTP, {args.size:,} customers, {args.concurrency} in flight, {args.seconds:g} s per "
        "cell; req/s (p99 ms)",
        "",
        "| round | GET by id: none | control | pii | pii/none | control/none "
        "| POST: none | control | pii | pii/none | control/none |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    ratios: dict[str, list[float]] = {}

    def serve(mode: str) -> list[str]:
        return [PYTHON, "-m", "service", "serve", "--config", str(configs[mode])] + [
            "--port",
            str(ports[mode]),
        ]

    with contextlib.ExitStack() as servers:
        for mode in MODES:
            servers.enter_context(running(serve(mode), ports[mode]))
        for number in range(1, args.rounds + 1):
            cells: list[str] = []
            order = MODES[number % len(MODES) :] + MODES[: number % len(MODES)]
            for row in ("GET by id", "POST"):
                results = {}
                for mode in order:
                    specs, expect = bench.specs(row, args.size, token, args.concurrency)
                    results[mode] = bench.load(ports[mode], specs, expect, args.concurrency)
                    assert results[mode]["errors"] == 0, results[mode]
                    time.sleep(1.5)  # the pii server's last flush, outside the next cell
                cells += [f"{results[m]['rps']:,.0f} ({results[m]['p99_ms']:.0f})" for m in MODES]
                for mode in ("pii", "control"):
                    ratio = results[mode]["rps"] / results["none"]["rps"]
                    ratios.setdefault(f"{row}, {mode}/none", []).append(ratio)
                    cells.append(f"{ratio:.0%}")
            lines.append(f"| {number} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    lines.append("")
    for row, values in ratios.items():
        lines.append(
            f"{row}: median {statistics.median(values):.0%} "
            f"(rounds: {', '.join(f'{v:.0%}' for v in values)})"
        )
        print(lines[-1], flush=True)
    return lines


def _no_journal(*_: Any) -> None:
    return None


async def journal_cost(inserts: int, folder: Path) -> list[str]:
    codec = PiiCodec(Keyring.generate())
    repository = open_repository(f"sqlite:///{folder / 'journal.db'}", "customers", codec)
    await repository.ensure_schema()
    change = Change.of("create", "benchmark", fields=("name", "email", "phone", "cpf", "address"))
    real = sqlite_audit.journal
    timings: dict[tuple[str, str], list[float]] = {}
    serial = 0

    async def one() -> None:
        nonlocal serial
        serial += 1
        await repository.insert(customer(1_000_000 + serial), change)

    try:
        for round_ in range(6):
            label = ("with journal", "without")[round_ % 2]
            # what the adapter calls in the insert's transaction: the entry, or nothing
            sqlite_adapter.journal = real if label == "with journal" else _no_journal
            started = time.perf_counter()
            for _ in range(inserts):
                await one()
            timings.setdefault(("sequential", label), []).append(time.perf_counter() - started)
            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(inserts * 10)))
            elapsed = (time.perf_counter() - started) / 10
            timings.setdefault(("concurrent", label), []).append(elapsed)
    finally:
        sqlite_adapter.journal = real
        await repository.close()
    lines = []
    for how in ("sequential", "concurrent"):
        with_journal = statistics.median(timings[(how, "with journal")]) / inserts
        without = statistics.median(timings[(how, "without")]) / inserts
        commits = "one commit each" if how == "sequential" else "group commit, all at once"
        lines.append(
            f"Journal, {how} inserts ({commits}), "
            f"median of 3 rounds: {with_journal * 1e3:.3f} ms per insert with the audit entry, "
            f"{without * 1e3:.3f} ms without: {without / with_journal:.0%} of the rate without"
        )
    return lines


async def read_cost(folder: Path) -> list[str]:
    """CPU per read recorded: on the loop (`record`, in the handler) and at the flush (one
    batch of 1,000 entries built, chained and inserted on the writer thread)."""
    codec = PiiCodec(Keyring.generate())
    repository = open_repository(f"sqlite:///{folder / 'reads.db'}", "customers", codec)
    await repository.ensure_schema()
    registry = CollectorRegistry()
    reads = ReadRecorder(
        repository.audit,
        "pii",
        written=Counter("w", "w", ["action"], registry=registry),
        depth=Gauge("d", "d", registry=registry),
        flush_latency=Histogram("f", "f", registry=registry),
    )
    customer_id, shown = ["6750c0ffee0000000000beef"], frozenset[str]()
    record, flush = [], []
    try:
        for _ in range(7):
            started = time.perf_counter()
            for _ in range(1000):
                reads.record("client-1", "gbhkpmoajndfcliegbhkpmoajndfclie", customer_id, shown)
            record.append((time.perf_counter() - started) / 1000)
            started = time.perf_counter()
            await reads.flush()
            flush.append((time.perf_counter() - started) / 1000)
    finally:
        await repository.close()
    return [
        f"Read recording, median of 7 batches of 1,000: {statistics.median(record) * 1e6:.1f} us "
        f"per read on the loop (the handler), {statistics.median(flush) * 1e6:.1f} us per read "
        "at the flush (entry, hash, insert; on the writer thread, the loop waits for nothing)"
    ]


async def size(entries: int, folder: Path) -> list[str]:
    codec = PiiCodec(Keyring.generate())
    path = folder / "size.db"
    repository = open_repository(f"sqlite:///{path}", "customers", codec)
    await repository.ensure_schema()
    customer_ids = [f"{n:024x}" for n in range(1, 1001)]
    bson_bytes = 0
    try:
        for start in range(0, entries, 1000):
            batch = [
                journal_rows(
                    Change.of(
                        "read",
                        f"client-{n % 50}",
                        request_id="gbhkpmoajndfcliegbhkpmoajndfclie",
                        fields=("address", "cpf", "email", "name", "phone"),
                    ),
                    customer_ids[n % 1000],
                ).audit
                for n in range(start, start + 1000)
            ]
            await repository.audit.append(batch)
        async for entry in repository.audit.chain():
            document = {
                "_id": entry["id"],
                "seq": 0,
                **{k: v for k, v in entry.items() if k != "id"},
            }
            bson_bytes += len(bson.encode(document))
    finally:
        await repository.close()
    with sqlite3.connect(path) as connection:
        used = connection.execute(
            "SELECT SUM(pgsize) FROM dbstat WHERE name IN ('audit', 'audit_customer', "
            "'audit_actor', 'sqlite_autoindex_audit_1')"
        ).fetchone()[0]
    scale = 1_000_000 / entries
    return [
        f"Store size per million entries ({entries:,} measured): "
        f"SQLite {used * scale / 2**20:,.0f} MiB "
        "(table, primary key on id, indexes by customer and by actor); MongoDB documents "
        f"{bson_bytes * scale / 2**20:,.0f} MiB of BSON before compression, without indexes"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--inserts", type=int, default=300)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        folder = Path(tmp)
        if not args.skip_http:
            http(args, folder)
        for line in asyncio.run(journal_cost(args.inserts, folder)):
            print(line, flush=True)
        for line in asyncio.run(read_cost(folder)):
            print(line, flush=True)
        for line in asyncio.run(size(args.entries, folder)):
            print(line, flush=True)


if __name__ == "__main__":
    main()
