"""Operator commands on the customer database: `python -m service db
backup|check|export|import|purge|audit` (`pii status|new-key|rotate`: `pii_commands.py`).

Export and import speak JSON lines (one customer per line, id and timestamps kept) through
the repository contract, so they move customers between any two adapters: the way from
the embedded SQLite file to MongoDB. Import checks every line as the API would
(`service/importer.py`), refuses the bad ones by line number and skips ids already stored,
so a re-run (after an interruption, say) stores only what is missing. Exports carry the CPF sealed
(`cpf_sealed`, readable with the same key document) unless `--decrypt` asks for it in clear.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from service.audit.chain import timestamp
from service.audit.report import customers_seen, verify
from service.cep.offline import OfflineProvider, resolve_db_path
from service.customers.model import Customer, now, to_json
from service.errors import ServiceUnavailable
from service.importer import EXPORT_PURPOSE, SEALED_CPF, import_lines
from service.keyfiles import open_private
from service.settings import Settings
from service.storage import open_storage
from service.storage.base import Change, CustomerRepository, redact_url
from service.storage.pii import PiiCodec, key_source, load_codec
from service.storage.sqlite_schema import sqlite_path
from service.storage_url import scheme_of
from service.validation.pipeline import ValidatorPipeline, load_validators

BATCH = 500


class AdminError(Exception):
    """A command that cannot do what was asked; the message says why (exit 1)."""


def _batch(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError("must be between 1 and 10000")
    return value


def add_db_commands(db: argparse.ArgumentParser) -> None:
    commands = db.add_subparsers(dest="db_command", required=True)
    commands.add_parser("check", help="integrity and index check; exit 1 saying what is wrong")
    backup = commands.add_parser("backup", help="online, consistent copy of the SQLite file")
    backup.add_argument("path", type=Path, help="new file to write (must not exist)")
    restore_ = commands.add_parser(
        "restore", help="replace the SQLite file with a backup (checked first; the old one kept)"
    )
    restore_.add_argument("path", type=Path, help="a file written by `db backup`")
    export = commands.add_parser("export", help="every customer as JSON lines (CPF sealed)")
    export.add_argument("path", nargs="?", default="-", help="file to write (default stdout)")
    export.add_argument("--decrypt", action="store_true", help="write the CPF in clear")
    export.add_argument("--force", action="store_true", help="overwrite an existing file")
    load = commands.add_parser(
        "import", help="JSON lines into storage.url: validated as the API does (idempotent)"
    )
    load.add_argument("path", nargs="?", default="-", help="file to read (default stdin)")
    load.add_argument(
        "--cep",
        choices=("skip", "offline"),
        default="skip",
        help="check each CEP exists in the offline directory (never a remote lookup)",
    )
    purge = commands.add_parser(
        "purge", help="anonymize closed customers past purge_after now (resumable)"
    )
    purge.add_argument("--batch", type=_batch, default=BATCH, help="customers per transaction")
    audit = commands.add_parser("audit", help="the audit trail (docs/audit.md)")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    audit_commands.add_parser(
        "verify", help="recompute the hash chain; exit 1 naming the first entry that fails"
    )
    report = audit_commands.add_parser(
        "export", help="incident report: the customers one actor saw, as JSON lines (0600)"
    )
    report.add_argument("--actor", required=True, help="the token subject (client or user)")
    report.add_argument("--since", type=_since, help="ISO 8601 time (UTC when no offset)")
    report.add_argument("path", nargs="?", default="-", help="new file (default stdout)")


def run_db_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.db_command == "backup":
            backup(settings.storage.url, args.path)
            print(f"backup written to {args.path}")
            return 0
        if args.db_command == "restore":
            count, kept = asyncio.run(restore(settings, args.path))
            where = f"; the database it replaced is kept as {kept}" if kept else ""
            print(f"restored {count} customers from {args.path}{where}")
            return 0
        return asyncio.run(_run_on_repository(settings, args))
    except (AdminError, ServiceUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


async def _run_on_repository(settings: Settings, args: argparse.Namespace) -> int:
    repository, codec = await open_storage(settings)
    try:
        if args.db_command == "check":
            problems = await repository.check()
            for problem in problems:
                print(f"problem: {problem}", file=sys.stderr)
            where = redact_url(settings.storage.url)
            print(f"{where}: {'NOT OK' if problems else 'ok'}")
            return 1 if problems else 0
        if args.db_command == "purge":
            total = await purge(repository, args.batch, "operator", _progress)
            print(f"anonymized {total} closed customers whose retention period had ended")
            return 0
        if args.db_command == "audit":
            return await _audit_command(repository, args)
        if args.db_command == "export":
            with _private_output(args.path, overwrite=args.force) as out:
                count = await export(repository, out, None if args.decrypt else codec)
            print(f"exported {count} customers", file=sys.stderr)
            return 0
        with _open(args.path, "r", sys.stdin) as lines:
            summary = await import_lines(
                repository, lines, codec, _import_pipeline(settings), _offline(settings, args)
            )
        for refusal in summary.refusals:
            print(f"refused {refusal}", file=sys.stderr)
        print(
            f"read {summary.read} customers, stored {summary.stored}, "
            f"already there {summary.already}, refused {summary.refused}"
        )
        return 1 if summary.refused else 0
    finally:
        await repository.close()


def _import_pipeline(settings: Settings) -> ValidatorPipeline:
    return ValidatorPipeline(load_validators(settings.validators))


def _offline(settings: Settings, args: argparse.Namespace) -> OfflineProvider | None:
    if args.cep != "offline":
        return None
    try:
        return OfflineProvider(resolve_db_path(settings.cep.offline, settings.base_dir))
    except ValueError as exc:
        raise AdminError(str(exc)) from None


def _progress(done: int) -> None:
    print(f"anonymized {done} so far", file=sys.stderr, flush=True)


async def purge(
    repository: CustomerRepository,
    batch: int,
    actor: str,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Anonymize every closed customer past `purge_after`, `batch` per transaction (each
    batch durable before the next starts, so a killed run loses nothing and a rerun
    finishes the job), each recorded as `anonymize` by `actor`; how many."""
    total, due = 0, now()
    while anonymized := await repository.purge(due, batch, Change.of("anonymize", actor)):
        total += anonymized
        if progress is not None:
            progress(total)
    return total


def _since(text: str) -> str:
    """An ISO 8601 time as the text entries carry (`at`), so comparing text compares time."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not an ISO 8601 time (2026-01-01T00:00:00Z)") from None
    return timestamp(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


async def _audit_command(repository: CustomerRepository, args: argparse.Namespace) -> int:
    if args.audit_command == "verify":
        verdict = await verify(repository.audit.chain())
        if verdict.bad_entry is not None:
            print(
                f"audit chain broken at entry {verdict.bad_entry} (after {verdict.checked} "
                f"good entries): {verdict.reason}",
                file=sys.stderr,
            )
            return 1
        # the head, kept elsewhere, is what shows a chain rewritten from the start
        print(f"audit chain ok: {verdict.checked} entries checked, head {verdict.head}")
        return 0
    lines = await customers_seen(
        lambda cursor: repository.audit.page(limit=BATCH, cursor=cursor, actor=args.actor),
        args.since,
    )
    with _private_output(args.path) as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")
    print(f"{len(lines)} customers seen by {args.actor}", file=sys.stderr)
    return 0


@contextmanager
def _private_output(path: str, *, overwrite: bool = False) -> Iterator[IO[str]]:
    """stdout for "-", else a file created 0600: a new one unless `overwrite` (--force)."""
    if path == "-":
        yield sys.stdout
        return
    try:
        fd = open_private(path, overwrite=overwrite)
    except FileExistsError:
        raise AdminError(f"{path} exists; give a new file name or --force") from None
    except OSError as exc:
        raise AdminError(f"{path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        yield file


def backup(url: str, destination: Path) -> None:
    """A consistent copy of a live SQLite file (SQLite's online backup API), created 0600."""
    scheme = scheme_of(url)
    if scheme is None or not scheme.file:
        raise AdminError("db backup copies SQLite files; for MongoDB use mongodump")
    source_path = sqlite_path(url)
    if not source_path.is_file():
        raise AdminError(f"no database file at {source_path}")
    if destination.exists():
        raise AdminError(f"{destination} exists; give a new file name")
    _copy_database(source_path, destination)


def _copy_database(source_path: Path, destination: Path) -> None:
    """`source_path` into `destination` page by page through SQLite (so the destination's
    journal stays consistent); a new destination is created 0600 (it holds personal data)."""
    if not destination.exists():
        try:
            os.close(open_private(destination))  # 0600 before SQLite writes a byte into it
        except OSError as exc:
            raise AdminError(f"{destination}: {exc.strerror}") from None
    source = sqlite3.connect(source_path)
    target = sqlite3.connect(destination, timeout=0)
    try:
        source.backup(target)
    except sqlite3.DatabaseError as exc:  # not a database; locked by another writer
        raise AdminError(f"{source_path} -> {destination}: {exc}") from None
    finally:
        target.close()
        source.close()


def _refuse_if_open(path: Path) -> None:
    """A WAL database leaves WAL mode only when no other connection has it open: the test
    that no server (or another command) is using the file about to be replaced."""
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        if mode == "wal" and connection.execute("PRAGMA journal_mode = DELETE").fetchone()[0]:
            connection.execute("PRAGMA journal_mode = WAL")
    except sqlite3.OperationalError:
        raise AdminError(
            f"{path} is open in another process (a server?): stop every server and worker "
            "on it first"
        ) from None
    finally:
        connection.close()


async def restore(settings: Settings, source: Path) -> tuple[int, Path | None]:
    """Replace the SQLite database of storage.url with the backup `source`, once a private
    copy of it opens as the server would open it (schema brought up to date, integrity and
    unique indexes checked, every CPF key present). The database it replaces is first copied
    beside it. Returns (customers restored, where the replaced database was kept)."""
    from service.storage.pii import check_key_ids
    from service.storage.sqlite import SqliteRepository

    url = settings.storage.url
    scheme = scheme_of(url)
    if scheme is None or not scheme.file:
        raise AdminError("db restore replaces SQLite files; for MongoDB use mongorestore")
    if not source.is_file():
        raise AdminError(f"no backup file at {source}")
    target = sqlite_path(url)
    staged = target.with_name(f".{target.name}.restore-{os.getpid()}")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _copy_database(source, staged)
        with contextlib.closing(sqlite3.connect(staged)) as connection:
            if not connection.execute("PRAGMA user_version").fetchone()[0]:
                raise AdminError(f"{source} is not a customers database (no schema version)")
        codec = load_codec(settings)
        repository = SqliteRepository(staged, codec)
        try:
            await repository.ensure_schema()
            problems = await repository.check()
            check_key_ids(await repository.pii_key_ids(), codec, key_source(settings)[0])
        except sqlite3.DatabaseError as exc:
            raise AdminError(f"{source} is not a customers database: {exc}") from None
        finally:
            await repository.close()
        if problems:
            raise AdminError(f"{source} is not sound: {'; '.join(problems)}")
        with contextlib.closing(sqlite3.connect(staged)) as connection:
            count = int(connection.execute("SELECT count(*) FROM customers").fetchone()[0])
        kept = None
        if target.exists():
            _refuse_if_open(target)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            kept = target.with_name(f"{target.name}.before-restore-{stamp}")
            _copy_database(target, kept)
        _copy_database(staged, target)
        return count, kept
    finally:
        for leftover in (
            staged,
            *(staged.with_name(staged.name + x) for x in ("-wal", "-shm", "-writer.lock")),
        ):
            leftover.unlink(missing_ok=True)


async def export(repository: CustomerRepository, out: IO[str], seal: PiiCodec | None) -> int:
    """Every customer as a JSON line; the CPF sealed by `seal` (None: in clear)."""
    count, cursor = 0, None
    while True:
        page = await repository.page(limit=BATCH, cursor=cursor)
        for customer in page.items:
            out.write(json.dumps(_to_json(customer, seal), ensure_ascii=False) + "\n")
        count += len(page.items)
        if page.next_cursor is None:
            return count
        cursor = page.next_cursor


def _to_json(customer: Customer, seal: PiiCodec | None) -> dict[str, Any]:
    line = to_json(customer)
    if seal is not None and customer["cpf"] is not None:  # an anonymized one has none
        line[SEALED_CPF] = seal.seal(customer["cpf"].encode(), EXPORT_PURPOSE)
        del line["cpf"]
    return line


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
