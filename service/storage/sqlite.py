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
import json
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from service.audit.chain import GENESIS, MEMBERS, Entry, chained
from service.customers.canonical import email_key
from service.customers.errors import DuplicateCustomer
from service.customers.model import Customer
from service.storage.base import (
    UNIQUE_FIELDS,
    Change,
    DatabaseUnavailable,
    Page,
    decode_cursor,
    decode_position,
    encode_cursor,
    encode_position,
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
from service.storage.journal import journal_rows
from service.storage.pii import PiiCodec, SealedCpf

T = TypeVar("T")
BUSY_TIMEOUT_S = 5.0
READER_MMAP_BYTES = 1 << 30  # address space, not memory: pages are mapped as they are read
READER_CACHE_KIB = 64 * 1024
WAL_SIZE_LIMIT_BYTES = 8 << 20
# domain field -> the column that carries its unique index
INDEXED = {"email": "email_key", "cpf": "cpf_index"}
UNIQUE_INDEXES = ("customers_email_key_unique", "customers_cpf_index_unique")
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
    (
        # the audit trail: `seq` is the chain position; rows are never updated or deleted
        """CREATE TABLE audit (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            fields TEXT NOT NULL,
            request_id TEXT,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        "CREATE INDEX audit_customer ON audit (customer_id, seq DESC)",
        "CREATE INDEX audit_actor ON audit (actor, seq DESC)",
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
        " BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END",
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
        " BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END",
    ),
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
    return connection


def _checkpoint(connection: sqlite3.Connection) -> None:
    """Copy what the WAL holds into the database file once the writes stop (PASSIVE: it
    waits for no reader), and cut the WAL file back to a bounded size.

    SQLite's automatic checkpoint runs only when the WAL passes 1000 pages, so after a burst
    up to 1000 pages stay in the WAL, where every read finds them through the WAL index."""
    connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


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


def _row(customer: Mapping[str, Any], codec: PiiCodec) -> tuple[Any, ...]:
    sealed = codec.encrypt_cpf(customer["cpf"])
    values = {
        **customer,
        "cpf_ciphertext": sealed.ciphertext,
        "cpf_key_id": sealed.key_id,
        "cpf_index": sealed.index,
        "address": json.dumps(customer["address"], ensure_ascii=False),
        "created_at": customer["created_at"].isoformat(),
        "updated_at": customer["updated_at"].isoformat(),
    }
    return (*(values[column] for column in COLUMNS), email_key(customer["email"]))


def _customer(row: Sequence[Any], codec: PiiCodec) -> Customer:
    customer = dict(zip(COLUMNS, row, strict=True))
    sealed = SealedCpf(
        customer.pop("cpf_ciphertext"), customer.pop("cpf_key_id"), customer.pop("cpf_index")
    )
    customer["cpf"] = codec.decrypt_cpf(sealed)
    customer["address"] = orjson.loads(customer["address"])
    for stamp in ("created_at", "updated_at"):
        customer[stamp] = datetime.fromisoformat(customer[stamp])
    return customer


AUDIT_COLUMNS = (*MEMBERS, "prev_hash", "hash")
_INSERT_AUDIT = (
    f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})"
)


def append_audit(connection: sqlite3.Connection, entries: Sequence[Entry]) -> None:
    """Link `entries` to the chain and insert them. Called inside the write transaction
    (`BEGIN IMMEDIATE` holds the file's write lock), so the head read here is the head:
    writers of every process on the file extend one chain."""
    row = connection.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    head = GENESIS if row is None else row[0]
    for entry in entries:
        linked = chained(entry, head)
        linked["fields"] = json.dumps(linked["fields"])
        connection.execute(_INSERT_AUDIT, tuple(linked[column] for column in AUDIT_COLUMNS))
        head = linked["hash"]


def _journal(connection: sqlite3.Connection, change: Change, customer_id: str) -> None:
    """What `change` records besides the customer, in the caller's transaction."""
    rows = journal_rows(change, customer_id)
    append_audit(connection, [rows.audit])
    # issue 17: insert rows.event here when it is not None


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
        self.audit = SqliteAuditStore(self)
        self._writer = GroupCommitWriter(
            lambda: connect(path), guard=lambda exc: DatabaseUnavailable(), on_idle=_checkpoint
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
            # Reads from memory-mapped pages (no read() per page) and a page cache that
            # holds the hot part of a large file: a point read costs the same at 10k and
            # 100k stored, and right after a burst of writes (docs/performance.md).
            self._reader.execute(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
            self._reader.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")

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

    async def insert(self, customer: Customer, change: Change) -> Customer:
        stamp = now()
        stored = {**customer, "id": new_id(), "created_at": stamp, "updated_at": stamp}
        await self._write(lambda connection: self._insert_all(connection, [stored], change))
        return stored

    async def restore(self, customers: Sequence[Customer], change: Change) -> int:
        return await self._write(lambda connection: self._insert_all(connection, customers, change))

    def _insert_all(
        self, connection: sqlite3.Connection, customers: Sequence[Customer], change: Change
    ) -> int:
        """Insert in one transaction, each with its journal; ids already stored are skipped
        (restore re-runs)."""
        stored = 0
        with _transaction(connection):
            for customer in customers:
                try:
                    inserted = connection.execute(_INSERT, _row(customer, self._codec)).rowcount
                except sqlite3.IntegrityError:
                    raise self._duplicate(connection, customer) from None
                if inserted:
                    _journal(connection, change, customer["id"])
                stored += inserted
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

    async def update(self, customer_id: str, changes: Customer, change: Change) -> Customer | None:
        canonical = parse_id(customer_id)

        def apply(connection: sqlite3.Connection) -> Customer | None:
            with _transaction(connection):
                row = connection.execute(f"{_SELECT} WHERE id = ?", (canonical,)).fetchone()
                if row is None:
                    return None
                current = _customer(row, self._codec)
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
                _journal(connection, change, current["id"])
                return updated

        return await self._write(apply)

    async def delete(self, customer_id: str, change: Change) -> bool:
        canonical = parse_id(customer_id)

        def remove(connection: sqlite3.Connection) -> bool:
            with _transaction(connection):
                deleted = connection.execute("DELETE FROM customers WHERE id = ?", (canonical,))
                if deleted.rowcount == 0:
                    return False
                _journal(connection, change, str(canonical))
                return True

        return canonical is not None and await self._write(remove)

    async def page(
        self, *, limit: int, cursor: str | None = None, filters: Mapping[str, str] | None = None
    ) -> Page:
        conditions = [f"{INDEXED[name]} = ?" for name in filters or {}]
        parameters: list[Any] = [
            index_value(name, value, self._codec) for name, value in (filters or {}).items()
        ]
        if cursor is not None:
            conditions.append("id > ?")
            parameters.append(decode_cursor(cursor))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._read(f"{_SELECT}{where} ORDER BY id LIMIT ?", (*parameters, limit + 1))
        customers = [_customer(row, self._codec) for row in rows[:limit]]
        has_more = len(rows) > limit
        return Page(customers, encode_cursor(customers[-1]["id"]) if has_more else None)

    async def exists(self, field: str, value: str, *, exclude_id: str | None = None) -> bool:
        excluded = parse_id(exclude_id) if exclude_id else None
        parameters = (index_value(field, value, self._codec), excluded)
        return bool(self._read(_taken_query(field), parameters))

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
                    "INSERT INTO idempotency_keys VALUES (?, ?, ?, NULL, ?) ON CONFLICT (id)"
                    " DO UPDATE SET fingerprint = excluded.fingerprint, token = excluded.token,"
                    " response = NULL, expires_at = excluded.expires_at",
                    (record, fingerprint, token, lease_end),
                )
            return Claim(ClaimState.CLAIMED, token=token)

        return await self._repository._write(take)

    async def complete(self, record: str, token: str, response: str, now: datetime) -> None:
        expires_at = _milliseconds(now + RESPONSE_TTL)
        await self._execute(
            "UPDATE idempotency_keys SET token = NULL, response = ?, expires_at = ?"
            " WHERE id = ? AND token = ?",
            (response, expires_at, record, token),
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


_SELECT_AUDIT = f"SELECT seq, {', '.join(AUDIT_COLUMNS)} FROM audit"


def _audit_entry(row: Sequence[Any]) -> Entry:
    entry = dict(zip(AUDIT_COLUMNS, row[1:], strict=True))
    entry["fields"] = orjson.loads(entry["fields"])
    return entry


class SqliteAuditStore:
    """The table `audit` of the repository's file: appended on the writer thread (in the
    transaction of the change it records), read on the loop through its two indexes."""

    def __init__(self, repository: SqliteRepository) -> None:
        self._repository = repository

    async def append(self, entries: Sequence[Entry]) -> None:
        def run(connection: sqlite3.Connection) -> None:
            with _transaction(connection):
                append_audit(connection, entries)

        if entries:
            await self._repository._write(run)

    async def page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        customer_id: str | None = None,
        actor: str | None = None,
    ) -> Page:
        column, value = ("customer_id", customer_id) if actor is None else ("actor", actor)
        before = decode_position(cursor) if cursor is not None else 2**63 - 1
        rows = self._repository._read(
            f"{_SELECT_AUDIT} WHERE {column} = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (value, before, limit + 1),
        )
        has_more = len(rows) > limit
        next_cursor = encode_position(rows[limit - 1][0]) if has_more else None
        return Page([_audit_entry(row) for row in rows[:limit]], next_cursor)

    async def chain(self) -> AsyncIterator[Entry]:
        after = 0
        while True:
            rows = self._repository._read(
                f"{_SELECT_AUDIT} WHERE seq > ? ORDER BY seq LIMIT 1000", (after,)
            )
            for row in rows:
                yield _audit_entry(row)
            if len(rows) < 1000:
                return
            after = rows[-1][0]


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
