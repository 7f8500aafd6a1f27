"""Idempotency-Key records of the SQLite adapter, in the repository's file."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from service.storage.idempotency import (
    IN_FLIGHT_LEASE,
    MAX_LIVE_KEYS,
    RESPONSE_TTL,
    SWEEP_BATCH,
    Claim,
    ClaimState,
    caller_range,
    existing_claim,
    new_token,
    planned_id,
)
from service.storage.sqlite_schema import transaction

T = TypeVar("T")


class Write(Protocol):
    """Run `work` on the writer thread in the next batch; its result once committed."""

    def __call__(self, work: Callable[[sqlite3.Connection], T]) -> Awaitable[T]: ...


# Pages handed back to the file system per sweep at most (4 KiB each: 40 MiB).
_VACUUM_PAGES = 10_000


def _give_pages_back(connection: sqlite3.Connection) -> None:
    """Free pages back to the file system (auto_vacuum incremental; a no-op otherwise).
    Python's driver steps `PRAGMA incremental_vacuum` once per execute, one page a step."""
    (free,) = connection.execute("PRAGMA freelist_count").fetchone()
    for _ in range(min(free, _VACUUM_PAGES)):
        connection.execute("PRAGMA incremental_vacuum(1)")


def _live_of_caller(connection: sqlite3.Connection, record: str, now: datetime) -> int:
    """The caller's live records, counted up to MAX_LIVE_KEYS (an index range scan)."""
    low, high = caller_range(record)
    (count,) = connection.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM idempotency_keys"
        " WHERE id >= ? AND id < ? AND expires_at > ? LIMIT ?)",
        (low, high, _milliseconds(now), MAX_LIVE_KEYS),
    ).fetchone()
    return int(count)


def _milliseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class SqliteIdempotencyStore:
    """Idempotency records in the table `idempotency_keys` of the repository's file, written
    by the `write` it is given (the repository's writer thread). `BEGIN IMMEDIATE` makes
    read-then-claim one atomic step, across processes too; expired records are ignored on
    read and deleted by `sweep`."""

    def __init__(self, write: Write) -> None:
        self._write = write

    async def claim(self, record: str, fingerprint: str, now: datetime) -> Claim:
        lease_end = _milliseconds(now + IN_FLIGHT_LEASE)

        def take(connection: sqlite3.Connection) -> Claim:
            previous = ""
            with transaction(connection):
                row = connection.execute(
                    "SELECT fingerprint, response, token, expires_at FROM idempotency_keys"
                    " WHERE id = ?",
                    (record,),
                ).fetchone()
                if row is not None and row[3] > _milliseconds(now):
                    return existing_claim(fingerprint, row[0], row[1], row[2])
                if row is not None and row[1] is None and row[0] == fingerprint and row[2]:
                    # an in-flight claim whose owner never completed: taken over with the
                    # id that owner may have stored a customer under, and a new owner
                    previous = planned_id(row[2])
                elif row is None and _live_of_caller(connection, record, now) >= MAX_LIVE_KEYS:
                    return Claim(ClaimState.TOO_MANY)
                token = new_token(previous)
                connection.execute(
                    "INSERT INTO idempotency_keys VALUES (?, ?, ?, NULL, ?, NULL) ON CONFLICT (id)"
                    " DO UPDATE SET fingerprint = excluded.fingerprint, token = excluded.token,"
                    " response = NULL, expires_at = excluded.expires_at, customer_id = NULL",
                    (record, fingerprint, token, lease_end),
                )
            return Claim(ClaimState.CLAIMED, token=token, previous=previous)

        return await self._write(take)

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
        """In batches of `SWEEP_BATCH`, each its own transaction; freed pages go back to the
        file system where the file allows it (auto_vacuum incremental). An expired in-flight
        claim stays a day more: it names the customer a retry answers."""
        deleted = 0
        while True:
            batch = await self._execute(
                "DELETE FROM idempotency_keys WHERE id IN (SELECT id FROM idempotency_keys"
                " WHERE expires_at <= ? AND (token IS NULL OR expires_at <= ?) LIMIT ?)",
                (_milliseconds(now), _milliseconds(now - RESPONSE_TTL), SWEEP_BATCH),
            )
            deleted += batch
            if batch < SWEEP_BATCH:
                break
        if deleted:
            await self._write(_give_pages_back)
        return deleted

    async def _execute(self, statement: str, parameters: Sequence[Any]) -> int:
        def run(connection: sqlite3.Connection) -> int:
            with transaction(connection):
                return connection.execute(statement, parameters).rowcount

        return await self._write(run)
