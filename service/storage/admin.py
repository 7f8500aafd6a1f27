"""Operator commands on the customer database: `python -m service db backup|check|export|import`.

Export and import speak JSON lines (one customer per line, id and timestamps kept) through
the repository contract, so they move customers between any two adapters: the way from
the embedded SQLite file to MongoDB. Import skips ids already stored, so a re-run (after
an interruption, say) stores only what is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from service.customers.errors import DuplicateCustomer
from service.customers.model import Customer
from service.errors import ServiceUnavailable
from service.settings import Settings
from service.storage import open_repository
from service.storage.base import CustomerRepository, parse_id, redact_url
from service.storage.sqlite import sqlite_path

BATCH = 500
REQUIRED_KEYS = frozenset(
    {"id", "name", "email", "phone", "cpf", "address", "created_at", "updated_at"}
)


class AdminError(Exception):
    """A command that cannot do what was asked; the message says why (exit 1)."""


def add_db_commands(db: argparse.ArgumentParser) -> None:
    commands = db.add_subparsers(dest="db_command", required=True)
    commands.add_parser("check", help="integrity and index check; exit 1 saying what is wrong")
    backup = commands.add_parser("backup", help="online, consistent copy of the SQLite file")
    backup.add_argument("path", type=Path, help="new file to write (must not exist)")
    export = commands.add_parser("export", help="every customer as JSON lines")
    export.add_argument("path", nargs="?", default="-", help="file to write (default stdout)")
    load = commands.add_parser("import", help="JSON lines into storage.url (idempotent)")
    load.add_argument("path", nargs="?", default="-", help="file to read (default stdin)")


def run_db_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.db_command == "backup":
            backup(settings.storage.url, args.path)
            print(f"backup written to {args.path}")
            return 0
        return asyncio.run(_run_on_repository(settings, args))
    except (AdminError, ServiceUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


async def _run_on_repository(settings: Settings, args: argparse.Namespace) -> int:
    repository = open_repository(settings.storage.url, settings.storage.database)
    try:
        await repository.ensure_schema()
        if args.db_command == "check":
            problems = await repository.check()
            for problem in problems:
                print(f"problem: {problem}", file=sys.stderr)
            where = redact_url(settings.storage.url)
            print(f"{where}: {'NOT OK' if problems else 'ok'}")
            return 1 if problems else 0
        if args.db_command == "export":
            with _open(args.path, "w", sys.stdout) as out:
                count = await export(repository, out)
            print(f"exported {count} customers", file=sys.stderr)
            return 0
        with _open(args.path, "r", sys.stdin) as lines:
            read, stored = await import_(repository, lines)
        print(f"read {read} customers, stored {stored}, {read - stored} were already there")
        return 0
    finally:
        await repository.close()


def backup(url: str, destination: Path) -> None:
    """A consistent copy of a live SQLite file (SQLite's online backup API)."""
    if not url.startswith("sqlite:///"):
        raise AdminError("db backup copies SQLite files; for MongoDB use mongodump")
    source_path = sqlite_path(url)
    if not source_path.is_file():
        raise AdminError(f"no database file at {source_path}")
    if destination.exists():
        raise AdminError(f"{destination} exists; give a new file name")
    source = sqlite3.connect(source_path)
    target = sqlite3.connect(destination)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


async def export(repository: CustomerRepository, out: IO[str]) -> int:
    count, cursor = 0, None
    while True:
        page = await repository.page(limit=BATCH, cursor=cursor)
        for customer in page.items:
            out.write(json.dumps(_to_json(customer), ensure_ascii=False) + "\n")
        count += len(page.items)
        if page.next_cursor is None:
            return count
        cursor = page.next_cursor


async def import_(repository: CustomerRepository, lines: Iterable[str]) -> tuple[int, int]:
    """(customers read, customers stored)."""
    read = stored = 0
    batch: list[Customer] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            batch.append(_from_json(line, number))
        if len(batch) == BATCH:
            read, stored = read + len(batch), stored + await _restore(repository, batch)
            batch = []
    return read + len(batch), stored + await _restore(repository, batch)


async def _restore(repository: CustomerRepository, batch: list[Customer]) -> int:
    try:
        return await repository.restore(batch) if batch else 0
    except DuplicateCustomer as exc:
        raise AdminError(
            f"a customer in the batch ending with id {batch[-1]['id']} clashes with a stored "
            f"customer of another id on {', '.join(exc.fields)}"
        ) from None


def _to_json(customer: Customer) -> dict[str, Any]:
    return {
        **customer,
        "created_at": customer["created_at"].isoformat(),
        "updated_at": customer["updated_at"].isoformat(),
    }


def _from_json(line: str, number: int) -> Customer:
    try:
        customer = json.loads(line)
    except ValueError:
        raise AdminError(f"line {number}: not JSON") from None
    if not isinstance(customer, dict):
        raise AdminError(f"line {number}: not a JSON object")
    missing = REQUIRED_KEYS - customer.keys()
    if missing:
        raise AdminError(f"line {number}: missing {', '.join(sorted(missing))}")
    if not isinstance(customer["id"], str) or parse_id(customer["id"]) != customer["id"]:
        raise AdminError(f"line {number}: the id is not 24 lower-case hex characters")
    try:
        for stamp in ("created_at", "updated_at"):
            customer[stamp] = datetime.fromisoformat(customer[stamp])
    except (TypeError, ValueError):
        raise AdminError(f"line {number}: timestamps are not ISO 8601") from None
    return customer


@contextmanager
def _open(path: str, mode: str, standard: IO[str]) -> Iterator[IO[str]]:
    if path == "-":
        yield standard
        return
    try:
        with open(path, mode, encoding="utf-8") as file:
            yield file
    except OSError as exc:
        raise AdminError(f"{path}: {exc.strerror}") from None
