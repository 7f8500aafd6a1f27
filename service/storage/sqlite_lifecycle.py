"""The lifecycle writes of the SQLite adapter: a transition, and the retention sweep.

Each runs in one write transaction: the status read is the one changed, the journal goes
with it, and an anonymization also deletes the customer's Idempotency-Key answers. After
an anonymization the WAL is emptied, so no old page image keeps the erased values.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from service.customers.lifecycle import ANONYMIZED, PURGE, Transition
from service.customers.model import Customer, changed_fields, now, transitioned
from service.storage.base import Change
from service.storage.pii import PiiCodec
from service.storage.sqlite_audit import journal
from service.storage.sqlite_idempotency import Write
from service.storage.sqlite_rows import SELECT, SELECT_BY_ID, UPDATE_ROW, to_customer, to_row
from service.storage.sqlite_schema import transaction, truncate_wal

log = logging.getLogger(__name__)


class SqliteLifecycle:
    """Writes on the repository's writer thread; the WAL checkpoint on a connection of its
    own to the file at `path`."""

    def __init__(self, write: Write, path: Path, codec: PiiCodec) -> None:
        self._write = write
        self._path = path
        self._codec = codec

    async def transition(
        self,
        canonical: str,
        transition: Transition,
        change: Change,
        closed_days: int,
        reason: str | None,
    ) -> Customer | None:
        def apply(connection: sqlite3.Connection) -> Customer | None:
            with transaction(connection):  # the write lock: the status read is the one changed
                row = connection.execute(SELECT_BY_ID, (canonical,)).fetchone()
                if row is None:
                    return None
                current = to_customer(row, self._codec)
                return self._apply(connection, transition, change, current, closed_days, reason)

        customer = await self._write(apply)
        if customer is not None and customer["status"] == ANONYMIZED:
            await self._truncate_wal()
        return customer

    def _apply(
        self,
        connection: sqlite3.Connection,
        transition: Transition,
        change: Change,
        current: Customer,
        closed_days: int,
        reason: str | None,
    ) -> Customer:
        """Write `current` after `transition` with its journal (raises the lifecycle errors);
        an anonymization also deletes the customer's Idempotency-Key answers, all in the
        same transaction."""
        after = transitioned(transition, current, now(), closed_days=closed_days, reason=reason)
        change = replace(change, fields=changed_fields(current, after))
        connection.execute(UPDATE_ROW, (*to_row(after, self._codec), current["id"]))
        journal(connection, change, current["id"])
        if after["status"] == ANONYMIZED:
            connection.execute(
                "DELETE FROM idempotency_keys WHERE customer_id = ?", (current["id"],)
            )
        return after

    async def purge(self, due: datetime, limit: int, change: Change) -> int:
        def sweep(connection: sqlite3.Connection) -> int:
            with transaction(connection):
                rows = connection.execute(
                    f"{SELECT} WHERE status = 'closed' AND purge_after <= ?"
                    " ORDER BY purge_after LIMIT ?",
                    (due.isoformat(), limit),
                ).fetchall()
                for row in rows:
                    current = to_customer(row, self._codec)
                    self._apply(connection, PURGE, change, current, 0, None)
            return len(rows)

        anonymized = await self._write(sweep)
        if anonymized:
            await self._truncate_wal()
        return anonymized

    async def _truncate_wal(self) -> None:
        """The erased values' old page images live in the WAL until it is emptied (the
        file's own pages are zeroed by `secure_delete`). Best effort: the anonymization is
        committed already, so a checkpoint that cannot run now (the file busy past the
        timeout) is left to the next one, not reported as a failed request."""
        try:
            await asyncio.to_thread(truncate_wal, self._path)
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint after an anonymization did not run: %s", exc)
