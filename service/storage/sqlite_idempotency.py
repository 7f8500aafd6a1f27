"""Idempotency-Key records of the SQLite adapter, in the repository's file."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from service.storage.idempotency import (
    IN_FLIGHT_LEASE,
    RESPONSE_TTL,
    Claim,
    ClaimState,
    existing_claim,
)
from service.storage.sqlite_schema import transaction

T = TypeVar("T")


class Write(Protocol):
    """Run `work` on the writer thread in the next batch; its result once committed."""

    def __call__(self, work: Callable[[sqlite3.Connection], T]) -> Awaitable[T]: ...


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
        token = secrets.token_hex(16)
        lease_end = _milliseconds(now + IN_FLIGHT_LEASE)

        def take(connection: sqlite3.Connection) -> Claim:
            with transaction(connection):
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
        return await self._execute(
            "DELETE FROM idempotency_keys WHERE expires_at <= ?", (_milliseconds(now),)
        )

    async def _execute(self, statement: str, parameters: Sequence[Any]) -> int:
        def run(connection: sqlite3.Connection) -> int:
            with transaction(connection):
                return connection.execute(statement, parameters).rowcount

        return await self._write(run)
