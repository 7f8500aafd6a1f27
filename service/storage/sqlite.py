"""SQLite adapter: the embedded profile's customers in one database file.

Driver, chosen by measurement (docs/operations.md, "Storage"): the standard `sqlite3`
module. Reads run on the event loop on a read-only-by-pragma connection (a point read
costs ~10 µs, less than a hop to a thread; in WAL mode readers never wait for a writer).
Writes run on one dedicated thread with its own connection, so a commit's fsync never
stalls the loop.
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
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from service.customers.canonical import parse_id
from service.customers.errors import DuplicateCustomer
from service.customers.lifecycle import STATUSES, UPDATE, Transition
from service.customers.model import (
    INDEXED,
    UNIQUE_FIELDS,
    Customer,
    Draft,
    complete,
    now,
)
from service.storage.base import (
    Change,
    DatabaseUnavailable,
    Page,
    StorageHealth,
    decode_cursor,
    encode_cursor,
    index_value,
    new_id,
    unavailable,
)
from service.storage.group_commit import GroupCommitWriter, WriterTurns
from service.storage.pii import PiiCodec, SealedCpf
from service.storage.sqlite_audit import SqliteAuditStore, journal
from service.storage.sqlite_events import SqliteEventStore
from service.storage.sqlite_idempotency import SqliteIdempotencyStore
from service.storage.sqlite_lifecycle import SqliteLifecycle
from service.storage.sqlite_rows import (
    INSERT,
    SELECT,
    SELECT_BY_ID,
    UPDATE_ROW,
    key_ids,
    taken_query,
    to_customer,
    to_row,
)
from service.storage.sqlite_schema import (
    check_schema,
    connect,
    migrate,
    sqlite_path,
    transaction,
    writer_lock_path,
)

T = TypeVar("T")
READER_MMAP_BYTES = 1 << 30  # address space, not memory: pages are mapped as they are read
READER_CACHE_KIB = 64 * 1024
WAL_SIZE_LIMIT_BYTES = 8 << 20


def _checkpoint(connection: sqlite3.Connection) -> None:
    """Copy what the WAL holds into the database file once the writes stop (PASSIVE: it
    waits for no reader), and cut the WAL file back to a bounded size.

    SQLite's automatic checkpoint runs only when the WAL passes 1000 pages, so after a burst
    up to 1000 pages stay in the WAL, where every read finds them through the WAL index."""
    connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


class SqliteRepository:
    def __init__(self, path: Path, codec: PiiCodec) -> None:
        self.path = path
        self._codec = codec
        self.idempotency = SqliteIdempotencyStore(self._write)
        self.audit = SqliteAuditStore(self._write, self._read)
        self.events = SqliteEventStore(self._write, self._read)
        self._lifecycle = SqliteLifecycle(self._write, path, codec)
        self._writer = GroupCommitWriter(
            lambda: connect(path),
            guard=unavailable,
            on_idle=_checkpoint,
            turns=WriterTurns(writer_lock_path(path)),
        )
        self.health = StorageHealth("sqlite")
        self._reader: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str, codec: PiiCodec) -> SqliteRepository:
        return cls(sqlite_path(url), codec)

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the writer thread in the next batch; its result once committed."""

        def run(connection: sqlite3.Connection) -> T:
            with _unavailable_on_driver_error():
                return work(connection)

        try:
            result = await self._writer.submit(run)
        except DatabaseUnavailable as exc:
            self.health.failed(exc, write=True)
            raise
        self.health.write_ok()
        return result

    def _read(self, query: str, parameters: Sequence[Any]) -> list[Any]:
        """Run a query on the loop (it costs less than a hop to a thread)."""
        if self._reader is None:
            raise DatabaseUnavailable()
        try:  # not `_unavailable_on_driver_error`: a context costs ~2 µs of a ~15 µs read
            return self._reader.execute(query, parameters).fetchall()
        except sqlite3.DatabaseError as exc:
            if not _is_outage(exc):
                raise
            failure = unavailable(exc)
        self.health.failed(failure, write=False)
        raise failure from None

    async def ensure_schema(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise unavailable(exc) from None
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
        return await self._write(check_schema)

    async def insert(self, customer: Draft, change: Change) -> Customer:
        stamp = now()
        # An id in the draft is the Idempotency-Key claim's (service/storage/idempotency.py).
        customer_id = customer.get("id") or new_id()
        stored = complete({**customer, "id": customer_id, "created_at": stamp, "updated_at": stamp})
        await self._write(lambda connection: self._insert_all(connection, [stored], change))
        return stored

    async def restore(self, customers: Sequence[Customer], change: Change) -> int:
        complete_ones = [complete(customer) for customer in customers]  # older exports too
        return await self._write(
            lambda connection: self._insert_all(connection, complete_ones, change)
        )

    def _insert_all(
        self, connection: sqlite3.Connection, customers: Sequence[Customer], change: Change
    ) -> int:
        """Insert in one transaction, each with its journal; ids already stored are skipped
        (restore re-runs)."""
        stored = 0
        with transaction(connection):
            for customer in customers:
                try:
                    inserted = connection.execute(INSERT, to_row(customer, self._codec)).rowcount
                except sqlite3.IntegrityError:
                    raise self._duplicate(connection, customer) from None
                if inserted:
                    journal(connection, change, customer["id"])
                stored += inserted
        return stored

    def _taken(
        self, connection: sqlite3.Connection, field: str, value: str, exclude: str | None
    ) -> bool:
        parameters = (index_value(field, value, self._codec), exclude)
        return connection.execute(taken_query(field), parameters).fetchone() is not None

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
        rows = self._read(SELECT_BY_ID, (parse_id(customer_id),))
        return to_customer(rows[0], self._codec) if rows else None

    async def update(self, customer_id: str, changes: Draft, change: Change) -> Customer | None:
        canonical = parse_id(customer_id)

        def apply(connection: sqlite3.Connection) -> Customer | None:
            with transaction(connection):
                row = connection.execute(SELECT_BY_ID, (canonical,)).fetchone()
                if row is None:
                    return None
                current = to_customer(row, self._codec)
                UPDATE.check(current["status"])
                address = {**current["address"], **changes.get("address", {})}
                updated = complete({**current, **changes, "address": address, "updated_at": now()})
                try:
                    connection.execute(UPDATE_ROW, (*to_row(updated, self._codec), canonical))
                except sqlite3.IntegrityError:
                    raise self._duplicate(connection, {**changes, "id": canonical}) from None
                journal(connection, change, current["id"])
                return updated

        return await self._write(apply)

    async def delete(self, customer_id: str, change: Change) -> bool:
        canonical = parse_id(customer_id)

        def remove(connection: sqlite3.Connection) -> bool:
            with transaction(connection):
                deleted = connection.execute("DELETE FROM customers WHERE id = ?", (canonical,))
                if deleted.rowcount == 0:
                    return False
                journal(connection, change, str(canonical))
                return True

        return canonical is not None and await self._write(remove)

    async def page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        filters: Mapping[str, str] | None = None,
        statuses: Collection[str] | None = None,
    ) -> Page[Customer]:
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
        customers = [to_customer(row, self._codec) for row in taken[:limit]]
        has_more = len(taken) > limit
        return Page(customers, encode_cursor(customers[-1]["id"]) if has_more else None)

    def _page_rows(self, conditions: list[str], parameters: list[Any], limit: int) -> list[Any]:
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return self._read(f"{SELECT}{where} ORDER BY id LIMIT ?", (*parameters, limit + 1))

    async def exists(self, field: str, value: str, *, exclude_id: str | None = None) -> bool:
        excluded = parse_id(exclude_id) if exclude_id else None
        parameters = (index_value(field, value, self._codec), excluded)
        return bool(self._read(taken_query(field), parameters))

    async def transition(
        self,
        customer_id: str,
        transition: Transition,
        change: Change,
        *,
        closed_days: int,
        reason: str | None = None,
    ) -> Customer | None:
        canonical = parse_id(customer_id)
        if canonical is None:
            return None

        return await self._lifecycle.transition(canonical, transition, change, closed_days, reason)

    async def purge(self, due: datetime, limit: int, change: Change) -> int:
        return await self._lifecycle.purge(due, limit, change)

    async def pii_key_ids(self) -> set[str]:
        if self._reader is None:
            raise DatabaseUnavailable()
        with _unavailable_on_driver_error():
            return key_ids(self._reader)

    async def reencrypt_pii(self, limit: int) -> int:
        active = self._codec.active_key_id

        def reseal(connection: sqlite3.Connection) -> int:
            resealed = 0
            with transaction(connection):
                for key_id in sorted(key_ids(connection) - {active}):
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


@contextmanager
def _unavailable_on_driver_error() -> Iterator[None]:
    """A file that cannot be opened, a lock held past the busy timeout, a disk error, a file
    that is not a database: 503. (IntegrityError is caught where it means a duplicate.)"""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if not _is_outage(exc):
            raise
        raise unavailable(exc) from None


def _is_outage(exc: sqlite3.DatabaseError) -> bool:
    """Not a programming error or a constraint (a bug, not an outage)."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError
