"""The audit trail of the SQLite adapter: the table `audit` of the repository's file,
appended by the writer it is given, read by its reader."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson

from service.audit.chain import GENESIS, MEMBERS, Entry, chained
from service.storage.base import Page, decode_position, encode_position
from service.storage.sqlite_idempotency import Write
from service.storage.sqlite_schema import transaction

# Run a query on the reader (the loop); its rows.
Read = Callable[[str, Sequence[Any]], list[Any]]
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


_SELECT_AUDIT = f"SELECT seq, {', '.join(AUDIT_COLUMNS)} FROM audit"


def _audit_entry(row: Sequence[Any]) -> Entry:
    entry = dict(zip(AUDIT_COLUMNS, row[1:], strict=True))
    entry["fields"] = orjson.loads(entry["fields"])
    return entry


class SqliteAuditStore:
    """The table `audit` of the repository's file: appended on the writer thread (in the
    transaction of the change it records), read on the loop through its two indexes."""

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
        return Page([_audit_entry(row) for row in rows[:limit]], next_cursor)

    async def chain(self) -> AsyncIterator[Entry]:
        after = 0
        while True:
            rows = self._read(f"{_SELECT_AUDIT} WHERE seq > ? ORDER BY seq LIMIT 1000", (after,))
            for row in rows:
                yield _audit_entry(row)
            if len(rows) < 1000:
                return
            after = rows[-1][0]
