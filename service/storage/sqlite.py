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

import asyncio
import heapq
import itertools
import json
import secrets
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from service.customers.canonical import email_key
from service.customers.errors import DuplicateCustomer
from service.customers.lifecycle import (
    ANONYMIZED,
    DATETIME_FIELDS,
    LIFECYCLE_FIELDS,
    NEW_CUSTOMER,
    PURGE,
    STATUSES,
    UPDATE,
    Transition,
    applied,
)
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
from service.storage.idempotency import (
    IN_FLIGHT_LEASE,
    RESPONSE_TTL,
    Claim,
    ClaimState,
    existing_claim,
)
from service.storage.pii import PiiCodec, SealedCpf

T = TypeVar("T")
BUSY_TIMEOUT_S = 5.0
# domain field -> the column that carries its unique index
INDEXED = {"email": "email_key", "cpf": "cpf_index"}
UNIQUE_INDEXES = ("customers_email_key_unique", "customers_cpf_index_unique")
# Anonymizations per transaction of the retention sweep (bounded: never one huge transaction).
COLUMNS = (
    "id",
    "name",
    "email",
    "phone",
    "cpf_ciphertext",
    "cpf_key_id",
    "cpf_index",
    "address",
    "created_at",
    "updated_at",
    *LIFECYCLE_FIELDS,
)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM customers"
_INSERT = (
    f"INSERT INTO customers ({', '.join(COLUMNS)}, email_key) "
    f"VALUES ({', '.join('?' * (len(COLUMNS) + 1))}) ON CONFLICT (id) DO NOTHING"
)
_CREATE_CUSTOMERS_V3 = """CREATE TABLE customers_v3 (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    phone TEXT NOT NULL,
    cpf_ciphertext TEXT NOT NULL,
    cpf_key_id TEXT NOT NULL,
    cpf_index TEXT NOT NULL,
    address TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID"""


def _encrypt_cpfs(connection: sqlite3.Connection, codec: PiiCodec) -> None:
    """Version 3: the CPF sealed (ciphertext, key id, blind index) instead of in clear.
    `secure_delete` zeroes the pages the clear table leaves behind, so no CPF stays in the
    file's free pages (`migrate` then empties the WAL)."""
    connection.execute("PRAGMA secure_delete = ON")
    connection.execute(_CREATE_CUSTOMERS_V3)
    old = "id, name, email, email_key, phone, cpf, address, created_at, updated_at"
    for row in connection.execute(f"SELECT {old} FROM customers").fetchall():
        sealed = codec.encrypt_cpf(row[5])
        connection.execute(
            "INSERT INTO customers_v3 (id, name, email, email_key, phone, cpf_ciphertext,"
            " cpf_key_id, cpf_index, address, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*row[:5], sealed.ciphertext, sealed.key_id, sealed.index, *row[6:]),
        )
    connection.execute("DROP TABLE customers")
    connection.execute("ALTER TABLE customers_v3 RENAME TO customers")
    for statement in (
        "CREATE UNIQUE INDEX customers_email_key_unique ON customers (email_key)",
        "CREATE UNIQUE INDEX customers_cpf_index_unique ON customers (cpf_index)",
        # `pii_key_ids` walks this index (a lookup per key id), `reencrypt_pii` reads by it
        "CREATE INDEX customers_cpf_key_id ON customers (cpf_key_id)",
        """CREATE TABLE idempotency_keys (
            id TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            token TEXT,
            response TEXT,
            expires_at INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at)",
    ):
        connection.execute(statement)


_STATUSES_SQL = ", ".join(f"'{status}'" for status in STATUSES)
_CREATE_CUSTOMERS_V4 = f"""CREATE TABLE customers_v4 (
    id TEXT PRIMARY KEY,
    name TEXT,
    email TEXT,
    email_key TEXT,
    phone TEXT,
    cpf_ciphertext TEXT,
    cpf_key_id TEXT,
    cpf_index TEXT,
    address TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ({_STATUSES_SQL})),
    closed_at TEXT,
    purge_after TEXT,
    anonymized_at TEXT,
    blocked_reason TEXT,
    -- an anonymized row holds no personal data, any other row all of it: never half
    CHECK ((status = 'anonymized') = (
        name IS NULL AND email IS NULL AND email_key IS NULL AND phone IS NULL
        AND cpf_ciphertext IS NULL AND cpf_key_id IS NULL AND cpf_index IS NULL)),
    CHECK (status = 'anonymized' OR (
        name IS NOT NULL AND email IS NOT NULL AND email_key IS NOT NULL
        AND phone IS NOT NULL AND cpf_ciphertext IS NOT NULL AND cpf_key_id IS NOT NULL
        AND cpf_index IS NOT NULL)),
    CHECK ((status IN ('closed', 'anonymized')) = (closed_at IS NOT NULL))
) WITHOUT ROWID"""


def _add_lifecycle(connection: sqlite3.Connection, codec: PiiCodec) -> None:
    """Version 4: statuses and their timestamps; the personal columns become nullable (an
    anonymized row holds none, and NULLs never clash in a unique index, so its email and
    CPF are free again). Rows are copied into a new table (SQLite cannot drop NOT NULL)."""
    connection.execute(_CREATE_CUSTOMERS_V4)
    old = (
        "id, name, email, email_key, phone, cpf_ciphertext, cpf_key_id, cpf_index, address,"
        " created_at, updated_at"
    )
    connection.execute(f"INSERT INTO customers_v4 ({old}) SELECT {old} FROM customers")
    connection.execute("DROP TABLE customers")
    connection.execute("ALTER TABLE customers_v4 RENAME TO customers")
    for statement in (
        "CREATE UNIQUE INDEX customers_email_key_unique ON customers (email_key)",
        "CREATE UNIQUE INDEX customers_cpf_index_unique ON customers (cpf_index)",
        "CREATE INDEX customers_cpf_key_id ON customers (cpf_key_id)",
        # a page of one status (a reader who sees only `active`) walks this index in id order
        "CREATE INDEX customers_status_id ON customers (status, id)",
        # the retention sweep: closed customers by deadline
        "CREATE INDEX customers_purge_after ON customers (purge_after) WHERE status = 'closed'",
        # the Idempotency-Key answers naming a customer, deleted when it is anonymized
        "ALTER TABLE idempotency_keys ADD COLUMN customer_id TEXT",
        "CREATE INDEX idempotency_keys_customer_id ON idempotency_keys (customer_id)"
        " WHERE customer_id IS NOT NULL",
    ):
        connection.execute(statement)


# One entry per schema version: what brings version N-1 to N (statements, or a function of
# the connection and the PII codec). Append only; `PRAGMA user_version` records how many
# have run.
Migration = tuple[str, ...] | Callable[[sqlite3.Connection, PiiCodec], None]
MIGRATIONS: tuple[Migration, ...] = (
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
    _encrypt_cpfs,
    _add_lifecycle,
)
SCHEMA_VERSION = len(MIGRATIONS)


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative/file.db` (to the working directory) or `sqlite:////abs/file.db`."""
    return Path(url.removeprefix("sqlite:///"))


def migrate(connection: sqlite3.Connection, codec: PiiCodec, target: int = SCHEMA_VERSION) -> None:
    """Bring the file forward to schema version `target`, in one transaction."""
    with _transaction(connection):
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"schema version {version} is newer than this code knows")
        for step in MIGRATIONS[version:target]:
            if callable(step):
                step(connection, codec)
            else:
                for statement in step:
                    connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {max(version, target)}")
    if version < target:  # what the steps replaced may linger in the WAL: empty it
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the file's settings."""
    connection = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    # Deleted or overwritten content is zeroed, not left in free space: what anonymization
    # erases is gone from the file once the WAL is checkpointed (`_truncate_wal`).
    connection.execute("PRAGMA secure_delete = ON")
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


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _row(customer: Mapping[str, Any], codec: PiiCodec) -> tuple[Any, ...]:
    """A customer as the values of `COLUMNS` + `email_key` (an anonymized one: NULLs)."""
    cpf, email = customer["cpf"], customer["email"]
    sealed = None if cpf is None else codec.encrypt_cpf(cpf)
    values = {
        **NEW_CUSTOMER,
        **customer,
        "cpf_ciphertext": sealed and sealed.ciphertext,
        "cpf_key_id": sealed and sealed.key_id,
        "cpf_index": sealed and sealed.index,
        "address": json.dumps(customer["address"], ensure_ascii=False),
    }
    for stamp in ("created_at", "updated_at", *DATETIME_FIELDS):
        values[stamp] = _stamp(values[stamp])
    return (*(values[column] for column in COLUMNS), None if email is None else email_key(email))


def _customer(row: Sequence[Any], codec: PiiCodec) -> Customer:
    customer = dict(zip(COLUMNS, row, strict=True))
    ciphertext, key_id, index = (
        customer.pop(f"cpf_{part}") for part in ("ciphertext", "key_id", "index")
    )
    customer["cpf"] = (
        None if ciphertext is None else codec.decrypt_cpf(SealedCpf(ciphertext, key_id, index))
    )
    customer["address"] = orjson.loads(customer["address"])
    for stamp in ("created_at", "updated_at", *DATETIME_FIELDS):
        if customer[stamp] is not None:
            customer[stamp] = datetime.fromisoformat(customer[stamp])
    return customer


def _taken_query(field: str) -> str:
    return f"SELECT 1 FROM customers WHERE {INDEXED[field]} = ? AND id IS NOT ? LIMIT 1"


def _key_ids(connection: sqlite3.Connection) -> set[str]:
    """Distinct key ids by walking the index: one seek per id, however many rows."""
    found: set[str] = set()
    last = ""
    while True:
        (key_id,) = connection.execute(
            "SELECT MIN(cpf_key_id) FROM customers WHERE cpf_key_id > ?", (last,)
        ).fetchone()
        if key_id is None:
            return found
        found.add(key_id)
        last = key_id


def _milliseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class SqliteRepository:
    def __init__(self, path: Path, codec: PiiCodec) -> None:
        self.path = path
        self._codec = codec
        self.idempotency = SqliteIdempotencyStore(self)
        self._writer = GroupCommitWriter(
            lambda: connect(path), guard=lambda exc: DatabaseUnavailable()
        )
        self._reader: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str, codec: PiiCodec) -> SqliteRepository:
        return cls(sqlite_path(url), codec)

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
        await asyncio.to_thread(self._migrate)
        with _unavailable_on_driver_error():
            self._reader = connect(self.path)
            self._reader.execute("PRAGMA query_only = ON")

    def _migrate(self) -> None:
        """On a connection of its own, before any write: a migration is its own transaction
        and ends with a WAL checkpoint, neither of which fits in a group-commit batch."""
        with _unavailable_on_driver_error():
            connection = connect(self.path)
            try:
                migrate(connection, self._codec)
            finally:
                connection.close()

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
        stored = {
            **NEW_CUSTOMER,
            **customer,
            "id": new_id(),
            "created_at": stamp,
            "updated_at": stamp,
        }
        await self._write(lambda connection: self._insert_all(connection, [stored]))
        return stored

    async def restore(self, customers: Sequence[Customer]) -> int:
        return await self._write(lambda connection: self._insert_all(connection, customers))

    def _insert_all(self, connection: sqlite3.Connection, customers: Sequence[Customer]) -> int:
        """Insert in one transaction; ids already stored are skipped (restore re-runs)."""
        stored = 0
        with _transaction(connection):
            for customer in customers:
                try:
                    stored += connection.execute(_INSERT, _row(customer, self._codec)).rowcount
                except sqlite3.IntegrityError:
                    raise self._duplicate(connection, customer) from None
        return stored

    def _taken(
        self, connection: sqlite3.Connection, field: str, value: str, exclude: str | None
    ) -> bool:
        parameters = (index_value(field, value, self._codec), exclude)
        return connection.execute(_taken_query(field), parameters).fetchone() is not None

    def _duplicate(
        self, connection: sqlite3.Connection, customer: Mapping[str, Any]
    ) -> DuplicateCustomer:
        """Every field of `customer` another customer holds (asked inside the transaction
        that failed, under the write lock, so the answer is exact)."""
        taken = [
            field
            for field in UNIQUE_FIELDS
            if field in customer
            and self._taken(connection, field, customer[field], customer.get("id"))
        ]
        return DuplicateCustomer(taken)

    async def get(self, customer_id: str) -> Customer | None:
        rows = self._read(f"{_SELECT} WHERE id = ?", (parse_id(customer_id),))
        return _customer(rows[0], self._codec) if rows else None

    async def update(self, customer_id: str, changes: Customer) -> Customer | None:
        canonical = parse_id(customer_id)

        def apply(connection: sqlite3.Connection) -> Customer | None:
            with _transaction(connection):
                row = connection.execute(f"{_SELECT} WHERE id = ?", (canonical,)).fetchone()
                if row is None:
                    return None
                current = _customer(row, self._codec)
                UPDATE.check(current["status"])
                address = {**current["address"], **changes.get("address", {})}
                updated = {**current, **changes, "address": address, "updated_at": now()}
                assignments = ", ".join(f"{column} = ?" for column in (*COLUMNS, "email_key"))
                try:
                    connection.execute(
                        f"UPDATE customers SET {assignments} WHERE id = ?",
                        (*_row(updated, self._codec), canonical),
                    )
                except sqlite3.IntegrityError:
                    raise self._duplicate(connection, {**changes, "id": canonical}) from None
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
        self,
        *,
        limit: int,
        cursor: str | None = None,
        filters: Mapping[str, str] | None = None,
        statuses: Collection[str] | None = None,
    ) -> Page:
        conditions = [f"{INDEXED[name]} = ?" for name in filters or {}]
        parameters: list[Any] = [
            index_value(name, value, self._codec) for name, value in (filters or {}).items()
        ]
        if cursor is not None:
            conditions.append("id > ?")
            parameters.append(decode_cursor(cursor))
        rows: Iterable[Any]
        if statuses is None or set(STATUSES) <= set(statuses):
            rows = self._page_rows(conditions, parameters, limit)
        else:  # one indexed walk (status, id) per status, merged: no row of another status read
            rows = heapq.merge(
                *(
                    self._page_rows([*conditions, "status = ?"], [*parameters, status], limit)
                    for status in sorted(set(statuses))
                ),
                key=lambda row: row[0],
            )
        taken = list(itertools.islice(rows, limit + 1))
        customers = [_customer(row, self._codec) for row in taken[:limit]]
        has_more = len(taken) > limit
        return Page(customers, encode_cursor(customers[-1]["id"]) if has_more else None)

    def _page_rows(self, conditions: list[str], parameters: list[Any], limit: int) -> list[Any]:
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return self._read(f"{_SELECT}{where} ORDER BY id LIMIT ?", (*parameters, limit + 1))

    async def exists(self, field: str, value: str, *, exclude_id: str | None = None) -> bool:
        excluded = parse_id(exclude_id) if exclude_id else None
        parameters = (index_value(field, value, self._codec), excluded)
        return bool(self._read(_taken_query(field), parameters))

    async def transition(
        self,
        customer_id: str,
        transition: Transition,
        *,
        closed_days: int,
        reason: str | None = None,
    ) -> Customer | None:
        canonical = parse_id(customer_id)
        if canonical is None:
            return None

        def apply(connection: sqlite3.Connection) -> Customer | None:
            with _transaction(connection):  # the write lock: the status read is the one changed
                row = connection.execute(f"{_SELECT} WHERE id = ?", (canonical,)).fetchone()
                if row is None:
                    return None
                after = self._apply(
                    connection, transition, _customer(row, self._codec), closed_days, reason
                )
                return after

        customer = await self._write(apply)
        if customer is not None and customer["status"] == ANONYMIZED:
            await self._truncate_wal()
        return customer

    def _apply(
        self,
        connection: sqlite3.Connection,
        transition: Transition,
        current: Customer,
        closed_days: int,
        reason: str | None,
    ) -> Customer:
        """Write `current` after `transition` (raises the lifecycle errors); an anonymization
        also deletes the customer's Idempotency-Key answers, in the same transaction."""
        after = applied(transition, current, now(), closed_days=closed_days, reason=reason)
        assignments = ", ".join(f"{column} = ?" for column in (*COLUMNS, "email_key"))
        connection.execute(
            f"UPDATE customers SET {assignments} WHERE id = ?",
            (*_row(after, self._codec), current["id"]),
        )
        if after["status"] == ANONYMIZED:
            connection.execute(
                "DELETE FROM idempotency_keys WHERE customer_id = ?", (current["id"],)
            )
        return after

    async def purge(self, due: datetime, limit: int) -> int:
        def sweep(connection: sqlite3.Connection) -> int:
            with _transaction(connection):
                rows = connection.execute(
                    f"{_SELECT} WHERE status = 'closed' AND purge_after <= ?"
                    " ORDER BY purge_after LIMIT ?",
                    (due.isoformat(), limit),
                ).fetchall()
                for row in rows:
                    self._apply(connection, PURGE, _customer(row, self._codec), 0, None)
            return len(rows)

        anonymized = await self._write(sweep)
        if anonymized:
            await self._truncate_wal()
        return anonymized

    async def _truncate_wal(self) -> None:
        """Copy the WAL into the file and empty it: the erased values' old page images live
        in the WAL until then (the file's own pages are zeroed by `secure_delete`)."""

        def checkpoint() -> None:
            with _unavailable_on_driver_error():
                connection = connect(self.path)
                try:
                    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    connection.close()

        await asyncio.to_thread(checkpoint)

    async def pii_key_ids(self) -> set[str]:
        if self._reader is None:
            raise DatabaseUnavailable()
        with _unavailable_on_driver_error():
            return _key_ids(self._reader)

    async def reencrypt_pii(self, limit: int) -> int:
        active = self._codec.active_key_id

        def reseal(connection: sqlite3.Connection) -> int:
            resealed = 0
            with _transaction(connection):
                for key_id in sorted(_key_ids(connection) - {active}):
                    rows = connection.execute(
                        "SELECT id, cpf_ciphertext, cpf_index FROM customers"
                        " WHERE cpf_key_id = ? LIMIT ?",
                        (key_id, limit - resealed),
                    ).fetchall()
                    for customer_id, ciphertext, index in rows:
                        cpf = self._codec.decrypt_cpf(SealedCpf(ciphertext, key_id, index))
                        sealed = self._codec.encrypt_cpf(cpf)
                        resealed += connection.execute(
                            "UPDATE customers SET cpf_ciphertext = ?, cpf_key_id = ?"
                            " WHERE id = ? AND cpf_ciphertext = ?",
                            (sealed.ciphertext, sealed.key_id, customer_id, ciphertext),
                        ).rowcount
                    if resealed >= limit:
                        break
            return resealed

        return await self._write(reseal)


class SqliteIdempotencyStore:
    """Idempotency records in the table `idempotency_keys` of the repository's file, written
    on its writer thread. `BEGIN IMMEDIATE` makes read-then-claim one atomic step, across
    processes too; expired records are ignored on read and deleted by `sweep`."""

    def __init__(self, repository: SqliteRepository) -> None:
        self._repository = repository

    async def claim(self, record: str, fingerprint: str, now: datetime) -> Claim:
        token = secrets.token_hex(16)
        lease_end = _milliseconds(now + IN_FLIGHT_LEASE)

        def take(connection: sqlite3.Connection) -> Claim:
            with _transaction(connection):
                row = connection.execute(
                    "SELECT fingerprint, response FROM idempotency_keys"
                    " WHERE id = ? AND expires_at > ?",
                    (record, _milliseconds(now)),
                ).fetchone()
                if row is not None:
                    return existing_claim(fingerprint, *row)
                connection.execute(
                    "INSERT INTO idempotency_keys VALUES (?, ?, ?, NULL, ?, NULL) ON CONFLICT (id)"
                    " DO UPDATE SET fingerprint = excluded.fingerprint, token = excluded.token,"
                    " response = NULL, expires_at = excluded.expires_at, customer_id = NULL",
                    (record, fingerprint, token, lease_end),
                )
            return Claim(ClaimState.CLAIMED, token=token)

        return await self._repository._write(take)

    async def complete(
        self,
        record: str,
        token: str,
        response: str,
        now: datetime,
        customer_id: str | None = None,
    ) -> None:
        expires_at = _milliseconds(now + RESPONSE_TTL)
        await self._execute(
            "UPDATE idempotency_keys SET token = NULL, response = ?, expires_at = ?,"
            " customer_id = ? WHERE id = ? AND token = ?",
            (response, expires_at, customer_id, record, token),
        )

    async def release(self, record: str, token: str) -> None:
        await self._execute(
            "DELETE FROM idempotency_keys WHERE id = ? AND token = ?", (record, token)
        )

    async def sweep(self, now: datetime) -> int:
        return await self._execute(
            "DELETE FROM idempotency_keys WHERE expires_at <= ?", (_milliseconds(now),)
        )

    async def _execute(self, statement: str, parameters: Sequence[Any]) -> int:
        def run(connection: sqlite3.Connection) -> int:
            with _transaction(connection):
                return connection.execute(statement, parameters).rowcount

        return await self._repository._write(run)


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
