"""The audit trail of the SQLite adapter: the table `audit` of the repository's file.

`journal` runs inside the transaction of the change it records (a group-commit batch's
savepoint), so the entry and the change commit or vanish together; the chain's head is read
there too, under the file's write lock, so the writers of every process extend one chain.
"""

from __future__ import annotations

import functools
import operator
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson

from service.audit.chain import GENESIS, MEMBERS, Entry, chained
from service.storage.base import Change, Page, decode_position, encode_position
from service.storage.journal import journal_rows
from service.storage.sqlite_events import append_events
from service.storage.sqlite_idempotency import Write
from service.storage.sqlite_schema import transaction

AUDIT_COLUMNS = (*MEMBERS, "prev_hash", "hash")
# A few multi-row INSERTs per batch, not one statement per row: the writer thread then gives
# the GIL back a few times per batch, not once per row, so every read on the event loop stops
# paying a hand-off (p50 of a point read 28 -> 15 µs under load with thousands of read
# entries a second; docs/performance.md). Plain parameters rather than one JSON array through
# `json_each`: SQLite 3.40 parses the array again for each column (8.5 against 4.4 µs a row).
_ROW_VALUES = operator.itemgetter(*AUDIT_COLUMNS)
_ROW = "(" + ", ".join("?" * len(AUDIT_COLUMNS)) + ")"
# Rows per statement are powers of two up to this (2,560 parameters, SQLite allows 32,766),
# so a batch of any size uses at most nine statements, each prepared once and cached.
_MOST_ROWS = 256


@functools.cache
def _insert_rows_statement(rows: int) -> str:
    return f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) VALUES " + ", ".join([_ROW] * rows)


_SELECT_AUDIT = f"SELECT seq, {', '.join(AUDIT_COLUMNS)} FROM audit"
_CHAIN_BATCH = 1000
Read = Callable[[str, Sequence[Any]], list[Any]]


def append_audit(connection: sqlite3.Connection, entries: Sequence[Entry]) -> None:
    """Link `entries` to the chain and insert them, in the caller's transaction.

    Chunk by chunk: linking is Python, which holds the GIL; the INSERT after each chunk gives
    it back, so the event loop waits for a few hundred links at most, not for a whole
    second's reads (which only the 5 ms switch interval would have interrupted)."""
    row = connection.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    head = GENESIS if row is None else row[0]
    start = 0
    while start < len(entries):
        size = min(_MOST_ROWS, 1 << ((len(entries) - start).bit_length() - 1))
        values: list[Any] = []
        for entry in entries[start : start + size]:
            linked = chained(entry, head)
            linked["fields"] = orjson.dumps(linked["fields"]).decode()
            values += _ROW_VALUES(linked)
            head = linked["hash"]
        connection.execute(_insert_rows_statement(size), values)
        start += size


def journal(connection: sqlite3.Connection, change: Change, customer_id: str) -> None:
    """What `change` records besides the customer, in the caller's transaction."""
    rows = journal_rows(change, customer_id)
    append_audit(connection, [rows.audit])
    if rows.event is not None:
        append_events(connection, [rows.event])


def _entry(row: Sequence[Any]) -> Entry:
    entry = dict(zip(AUDIT_COLUMNS, row[1:], strict=True))
    entry["fields"] = orjson.loads(entry["fields"])
    return entry


class SqliteAuditStore:
    """Appended on the writer thread, read on the loop through its two indexes."""

    def __init__(self, write: Write, read: Read) -> None:
        self._write = write
        self._read = read

    async def append(self, entries: Sequence[Entry]) -> None:
        def run(connection: sqlite3.Connection) -> None:
            with transaction(connection):
                append_audit(connection, entries)

        if entries:
            await self._write(run)

    async def page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        customer_id: str | None = None,
        actor: str | None = None,
    ) -> Page[Entry]:
        column, value = ("customer_id", customer_id) if actor is None else ("actor", actor)
        before = decode_position(cursor) if cursor is not None else 2**63 - 1
        rows = self._read(
            f"{_SELECT_AUDIT} WHERE {column} = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (value, before, limit + 1),
        )
        has_more = len(rows) > limit
        next_cursor = encode_position(rows[limit - 1][0]) if has_more else None
        return Page([_entry(row) for row in rows[:limit]], next_cursor)

    async def drain(self) -> int:
        return 0  # nothing pending: every entry is written in its change's transaction

    async def chain(self) -> AsyncIterator[Entry]:
        after = 0
        while True:
            rows = self._read(
                f"{_SELECT_AUDIT} WHERE seq > ? ORDER BY seq LIMIT ?", (after, _CHAIN_BATCH)
            )
            for row in rows:
                yield _entry(row)
            if len(rows) < _CHAIN_BATCH:
                return
            after = rows[-1][0]
