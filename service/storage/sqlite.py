"""SQLite adapter: the embedded profile's customers in one database file.

Driver, chosen by measurement (README, Storage): the standard `sqlite3` module. Reads run
on the event loop on a read-only-by-pragma connection (a point read costs ~10 µs, less than
a hop to a thread; in WAL mode readers never wait for a writer). Writes run on one
dedicated thread with its own connection, so a commit's fsync never stalls the loop.
Across processes sharing the file, `BEGIN IMMEDIATE` plus a busy timeout serialize the
writers and the unique indexes decide uniqueness.

Durability: WAL with `synchronous=FULL`, so the WAL is fsynced on every commit. NORMAL
would survive a killed process too, but may lose the last commits on a power cut or OS
crash; an acknowledged customer must survive both. The cost (one fsync per commit) is paid
on the writer thread, not on the loop, and shared: the writer commits every write waiting
for it in one transaction (group commit, service/storage/group_commit.py), and answers
each write only once its batch is committed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from service.customers.errors import DuplicateCustomer
from service.customers.model import Customer
from service.storage.base import (
    UNIQUE_FIELDS,
    DatabaseUnavailable,
    Page,
    decode_cursor,
    encode_cursor,
    index_value,
    new_id,
    now,
    parse_id,
)
from service.storage.group_commit import GroupCommitWriter

T = TypeVar("T")
BUSY_TIMEOUT_S = 5.0
# domain field -> the column that carries its unique index
INDEXED = {"email": "email_key", "cpf": "cpf"}
UNIQUE_INDEXES = ("customers_email_key_unique", "customers_cpf_unique")
# One entry per schema version: the statements that bring version N-1 to N. Append only;
# `PRAGMA user_version` records how many have run.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE customers (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            email TEXT NOT NULL,
            email_key TEXT NOT NULL,
            phone TEXT NOT NULL,
            cpf TEXT NOT NULL,
            address TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE UNIQUE INDEX customers_email_key_unique ON customers (email_key)",
    ),
    ("CREATE UNIQUE INDEX customers_cpf_unique ON customers (cpf)",),
)
SCHEMA_VERSION = len(MIGRATIONS)
COLUMNS = ("id", "name", "email", "phone", "cpf", "address", "created_at", "updated_at")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM customers"
_INSERT = (
    f"INSERT INTO customers ({', '.join(COLUMNS)}, email_key) "
    f"VALUES ({', '.join('?' * (len(COLUMNS) + 1))}) ON CONFLICT (id) DO NOTHING"
)


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative/file.db` (to the working directory) or `sqlite:////abs/file.db`."""
    return Path(url.removeprefix("sqlite:///"))


def migrate(connection: sqlite3.Connection, target: int = SCHEMA_VERSION) -> None:
    """Bring the file forward to schema version `target`, in one transaction."""
    with _transaction(connection):
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"schema version {version} is newer than this code knows")
        for statements in MIGRATIONS[version:target]:
            for statement in statements:
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {max(version, target)}")


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the file's settings."""
    connection = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    return connection


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE`: take the write lock first, so a transaction never has to be
    retried half-way because another process wrote meanwhile.

    Inside a group-commit batch (already in a transaction) the work runs as it is: the
    batch gives it its own savepoint, undone if it raises."""
    if connection.in_transaction:
        yield
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _row(customer: Mapping[str, Any]) -> tuple[Any, ...]:
    values = {
        **customer,
        "address": json.dumps(customer["address"], ensure_ascii=False),
        "created_at": customer["created_at"].isoformat(),
        "updated_at": customer["updated_at"].isoformat(),
    }
    return (*(values[column] for column in COLUMNS), index_value("email", customer["email"]))


def _customer(row: Sequence[Any]) -> Customer:
    customer = dict(zip(COLUMNS, row, strict=True))
    customer["address"] = json.loads(customer["address"])
    for stamp in ("created_at", "updated_at"):
        customer[stamp] = datetime.fromisoformat(customer[stamp])
    return customer


def _taken_query(field: str) -> str:
    return f"SELECT 1 FROM customers WHERE {INDEXED[field]} = ? AND id IS NOT ? LIMIT 1"


def _taken(connection: sqlite3.Connection, field: str, value: str, exclude: str | None) -> bool:
    parameters = (index_value(field, value), exclude)
    return connection.execute(_taken_query(field), parameters).fetchone() is not None


def _duplicate(connection: sqlite3.Connection, customer: Mapping[str, Any]) -> DuplicateCustomer:
    """Every field of `customer` another customer holds (asked inside the transaction that
    failed, under the write lock, so the answer is exact)."""
    taken = [
        field
        for field in UNIQUE_FIELDS
        if field in customer and _taken(connection, field, customer[field], customer.get("id"))
    ]
    return DuplicateCustomer(taken)


class SqliteRepository:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = GroupCommitWriter(
            lambda: connect(path), guard=lambda exc: DatabaseUnavailable()
        )
        self._reader: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> SqliteRepository:
        return cls(sqlite_path(url))

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the writer thread in the next batch; its result once committed."""

        def run(connection: sqlite3.Connection) -> T:
            with _unavailable_on_driver_error():
                return work(connection)

        return await self._writer.submit(run)

    def _read(self, query: str, parameters: Sequence[Any]) -> list[Any]:
        """Run a query on the loop (it costs less than a hop to a thread)."""
        if self._reader is None:
            raise DatabaseUnavailable()
        with _unavailable_on_driver_error():
            return self._reader.execute(query, parameters).fetchall()

    async def ensure_schema(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            raise DatabaseUnavailable() from None
        await self._write(migrate)
        with _unavailable_on_driver_error():
            self._reader = connect(self.path)
            self._reader.execute("PRAGMA query_only = ON")

    async def ping(self) -> None:
        self._read("SELECT 1 FROM customers LIMIT 1", ())  # touches the file, not only the driver

    async def close(self) -> None:
        await self._writer.close()
        if self._reader is not None:
            self._reader.close()

    async def check(self) -> list[str]:
        def inspect(connection: sqlite3.Connection) -> list[str]:
            problems = [
                f"integrity_check: {message}"
                for (message,) in connection.execute("PRAGMA integrity_check").fetchall()
                if message != "ok"
            ]
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                problems.append(f"schema version {version}, expected {SCHEMA_VERSION}")
            indexes = {
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'customers'"
                )
            }
            problems += [
                f"missing unique index {name}" for name in UNIQUE_INDEXES if name not in indexes
            ]
            return problems

        return await self._write(inspect)

    async def insert(self, customer: Customer) -> Customer:
        stamp = now()
        stored = {**customer, "id": new_id(), "created_at": stamp, "updated_at": stamp}
        await self._write(lambda connection: self._insert_all(connection, [stored]))
        return stored

    async def restore(self, customers: Sequence[Customer]) -> int:
        return await self._write(lambda connection: self._insert_all(connection, customers))

    @staticmethod
    def _insert_all(connection: sqlite3.Connection, customers: Sequence[Customer]) -> int:
        """Insert in one transaction; ids already stored are skipped (restore re-runs)."""
        stored = 0
        with _transaction(connection):
            for customer in customers:
                try:
                    stored += connection.execute(_INSERT, _row(customer)).rowcount
                except sqlite3.IntegrityError:
                    raise _duplicate(connection, customer) from None
        return stored

    async def get(self, customer_id: str) -> Customer | None:
        rows = self._read(f"{_SELECT} WHERE id = ?", (parse_id(customer_id),))
        return _customer(rows[0]) if rows else None

    async def update(self, customer_id: str, changes: Customer) -> Customer | None:
        canonical = parse_id(customer_id)

        def apply(connection: sqlite3.Connection) -> Customer | None:
            with _transaction(connection):
                row = connection.execute(f"{_SELECT} WHERE id = ?", (canonical,)).fetchone()
                if row is None:
                    return None
                current = _customer(row)
                address = {**current["address"], **changes.get("address", {})}
                updated = {**current, **changes, "address": address, "updated_at": now()}
                assignments = ", ".join(f"{column} = ?" for column in (*COLUMNS, "email_key"))
                try:
                    connection.execute(
                        f"UPDATE customers SET {assignments} WHERE id = ?",
                        (*_row(updated), canonical),
                    )
                except sqlite3.IntegrityError:
                    raise _duplicate(connection, {**changes, "id": canonical}) from None
                return updated

        return await self._write(apply)

    async def delete(self, customer_id: str) -> bool:
        canonical = parse_id(customer_id)

        def remove(connection: sqlite3.Connection) -> bool:
            with _transaction(connection):
                return (
                    connection.execute("DELETE FROM customers WHERE id = ?", (canonical,)).rowcount
                    > 0
                )

        return canonical is not None and await self._write(remove)

    async def page(
        self, *, limit: int, cursor: str | None = None, filters: Mapping[str, str] | None = None
    ) -> Page:
        conditions = [f"{INDEXED[name]} = ?" for name in filters or {}]
        parameters: list[Any] = [
            index_value(name, value) for name, value in (filters or {}).items()
        ]
        if cursor is not None:
            conditions.append("id > ?")
            parameters.append(decode_cursor(cursor))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._read(f"{_SELECT}{where} ORDER BY id LIMIT ?", (*parameters, limit + 1))
        customers = [_customer(row) for row in rows[:limit]]
        has_more = len(rows) > limit
        return Page(customers, encode_cursor(customers[-1]["id"]) if has_more else None)

    async def exists(self, field: str, value: str, *, exclude_id: str | None = None) -> bool:
        excluded = parse_id(exclude_id) if exclude_id else None
        return bool(self._read(_taken_query(field), (index_value(field, value), excluded)))


@contextmanager
def _unavailable_on_driver_error() -> Iterator[None]:
    """A file that cannot be opened, a lock held past the busy timeout, a disk error, a file
    that is not a database: 503. (IntegrityError is caught where it means a duplicate.)"""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if not isinstance(exc, sqlite3.OperationalError) and type(exc) is not sqlite3.DatabaseError:
            raise  # a programming error or a constraint: a bug, not an outage
        raise DatabaseUnavailable() from None
