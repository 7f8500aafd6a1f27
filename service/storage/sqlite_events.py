"""The events of the SQLite adapter: the outbox table, the feed, the webhook deliveries.

`position` is the table's AUTOINCREMENT key, assigned by `append_events` inside the write
transaction of the change. `BEGIN IMMEDIATE` holds the file's write lock from the first
statement, so transactions of every process on the file commit one after another, each
taking the positions after the last committed one: positions are one total commit order,
and a reader never sees a position before a smaller one that is still to come (no gap a
resumed consumer would skip). AUTOINCREMENT never hands a position out twice, even after
the retention sweep deleted every event.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from service.events.model import CursorExpired, Event, timestamp
from service.events.store import Delivery, DeliveryStats, FeedPage
from service.storage.sqlite_schema import transaction

Write = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]
Read = Callable[[str, Sequence[Any]], list[Any]]

T = TypeVar("T")

_EVENT_COLUMNS = "position, id, type, customer_id, fields, occurred_at"


def append_events(connection: sqlite3.Connection, events: Sequence[Event]) -> None:
    """Insert `events` in the caller's write transaction; each gets the next position."""
    connection.executemany(
        "INSERT INTO events (id, type, customer_id, fields, occurred_at) VALUES (?, ?, ?, ?, ?)",
        [
            (e.id, e.type, e.customer_id, orjson.dumps(e.fields).decode(), timestamp(e.occurred_at))
            for e in events
        ],
    )


def _event(row: Sequence[Any]) -> tuple[int, Event]:
    position, event_id, event_type, customer_id, fields, occurred_at = row
    moment = datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))
    return position, Event(event_id, event_type, customer_id, tuple(orjson.loads(fields)), moment)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


class SqliteEventStore:
    """Reads on the repository's read connection, writes on its writer thread (group
    commit, `BEGIN IMMEDIATE`: atomic across the processes on the file)."""

    def __init__(self, write: Write, read: Read) -> None:
        self._writer = write
        self._reader = read

    def _read(self, query: str, parameters: Sequence[Any] = ()) -> list[Any]:
        return self._reader(query, parameters)

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def run(connection: sqlite3.Connection) -> T:
            with transaction(connection):
                return work(connection)

        result: T = await self._writer(run)
        return result

    async def page(self, *, after: int | None, limit: int) -> FeedPage:
        ((swept,),) = self._read("SELECT swept_through FROM event_feed")
        if after is None:
            after = swept
        elif after < swept:
            raise CursorExpired(after)
        rows = self._read(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit + 1),
        )
        return FeedPage([_event(row) for row in rows[:limit]], len(rows) > limit, after)

    async def head(self) -> int:
        ((newest,),) = self._read(
            "SELECT MAX(COALESCE((SELECT MAX(position) FROM events), 0), swept_through)"
            " FROM event_feed"
        )
        return int(newest)

    async def sweep(self, *, before: datetime, limit: int) -> int:
        cutoff = timestamp(before)

        def delete(connection: sqlite3.Connection) -> int:
            rows = connection.execute(
                "SELECT position, occurred_at FROM events ORDER BY position LIMIT ?", (limit,)
            ).fetchall()
            last = None
            for position, occurred_at in rows:  # the oldest prefix: the feed has no holes
                if occurred_at >= cutoff:
                    break
                last = position
            if last is None:
                return 0
            deleted = connection.execute("DELETE FROM events WHERE position <= ?", (last,))
            connection.execute(
                "UPDATE event_feed SET swept_through = MAX(swept_through, ?)", (last,)
            )
            return int(deleted.rowcount)

        return await self._write(delete)

    async def start_endpoint(self, endpoint: str) -> None:
        head = await self.head()
        await self._write(
            lambda connection: connection.execute(
                "INSERT INTO webhook_cursors VALUES (?, ?) ON CONFLICT DO NOTHING",
                (endpoint, head),
            )
        )

    async def enqueue(self, endpoint: str, types: Sequence[str], *, limit: int) -> int:
        rows = self._read(
            "SELECT 1 FROM events WHERE position >"
            " (SELECT position FROM webhook_cursors WHERE endpoint = ?) LIMIT 1",
            (endpoint,),
        )
        if not rows:  # nothing new: no write (the relay asks twice a second)
            return 0

        def move(connection: sqlite3.Connection) -> int:
            (cursor,) = connection.execute(
                "SELECT position FROM webhook_cursors WHERE endpoint = ?", (endpoint,)
            ).fetchone()
            rows = connection.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (cursor, limit),
            ).fetchall()
            events = [_event(row) for row in rows]
            self._owe(connection, endpoint, [pe for pe in events if pe[1].type in types])
            if rows:
                connection.execute(
                    "UPDATE webhook_cursors SET position = ? WHERE endpoint = ?",
                    (rows[-1][0], endpoint),
                )
            return len(rows)

        return await self._write(move)

    @staticmethod
    def _owe(
        connection: sqlite3.Connection,
        endpoint: str,
        events: Sequence[tuple[int, Event]],
        *,
        again: bool = False,
    ) -> int:
        """Add a delivery per event; `again` resets one that exists (replay)."""
        conflict = (
            "DO UPDATE SET dead = 0, attempts = 0, next_at = excluded.next_at, last_error = NULL"
            if again
            else "DO NOTHING"
        )
        before = connection.total_changes
        connection.executemany(
            "INSERT INTO webhook_deliveries (endpoint, event_id, position, customer_id, body,"
            f" occurred_at, next_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT {conflict}",
            [
                (
                    endpoint,
                    event.id,
                    position,
                    event.customer_id,
                    event.to_json().decode(),
                    _ms(event.occurred_at),
                    0,  # due at once
                )
                for position, event in events
            ],
        )
        return connection.total_changes - before

    async def claim(
        self, endpoint: str, *, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        due = (
            "SELECT endpoint, event_id, position, customer_id, body, attempts, occurred_at"
            " FROM webhook_deliveries AS d WHERE endpoint = ? AND dead = 0 AND next_at <= ?"
            " AND lease_until <= ? AND NOT EXISTS (SELECT 1 FROM webhook_deliveries AS o"
            "  WHERE o.endpoint = d.endpoint AND o.customer_id = d.customer_id AND o.dead = 0"
            "  AND o.position < d.position)"
            " ORDER BY position LIMIT ?"
        )
        parameters = (endpoint, _ms(now), _ms(now), limit)
        if not self._read(due, parameters):  # nothing due: no write
            return []

        def lease(connection: sqlite3.Connection) -> list[Delivery]:
            rows = connection.execute(due, parameters).fetchall()  # again, under the lock
            connection.executemany(
                "UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ?"
                " WHERE endpoint = ? AND event_id = ?",
                [(owner, _ms(lease_until), endpoint, row[1]) for row in rows],
            )
            return [
                Delivery(row[0], row[1], row[2], row[3], row[4].encode(), row[5], _from_ms(row[6]))
                for row in rows
            ]

        return await self._write(lease)

    async def delivered(self, delivery: Delivery, *, owner: str) -> None:
        await self._write(
            lambda connection: connection.execute(
                "DELETE FROM webhook_deliveries WHERE endpoint = ? AND event_id = ?"
                " AND lease_owner = ?",
                (delivery.endpoint, delivery.event_id, owner),
            )
        )

    async def failed(
        self, delivery: Delivery, *, owner: str, next_at: datetime | None, error: str
    ) -> None:
        await self._write(
            lambda connection: connection.execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, dead = ?, next_at = ?,"
                " last_error = ?, lease_owner = NULL, lease_until = 0"
                " WHERE endpoint = ? AND event_id = ? AND lease_owner = ?",
                (
                    int(next_at is None),
                    _ms(next_at) if next_at else 0,
                    error,
                    delivery.endpoint,
                    delivery.event_id,
                    owner,
                ),
            )
        )

    async def postpone(self, delivery: Delivery, *, owner: str, next_at: datetime) -> None:
        await self._write(
            lambda connection: connection.execute(
                "UPDATE webhook_deliveries SET next_at = ?, lease_owner = NULL, lease_until = 0"
                " WHERE endpoint = ? AND event_id = ? AND lease_owner = ?",
                (_ms(next_at), delivery.endpoint, delivery.event_id, owner),
            )
        )

    async def stats(self, endpoint: str) -> DeliveryStats:
        ((pending, oldest),) = self._read(
            "SELECT COUNT(*), MIN(occurred_at) FROM webhook_deliveries"
            " WHERE endpoint = ? AND dead = 0",
            (endpoint,),
        )
        ((dead,),) = self._read(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint = ? AND dead = 1", (endpoint,)
        )
        return DeliveryStats(pending, dead, None if oldest is None else _from_ms(oldest))

    async def replay(self, endpoint: str, types: Sequence[str], *, since: datetime) -> int:
        def owe(connection: sqlite3.Connection) -> int:
            rows = connection.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE occurred_at >= ? ORDER BY position",
                (timestamp(since),),
            ).fetchall()
            events = [pe for pe in map(_event, rows) if pe[1].type in types]
            return self._owe(connection, endpoint, events, again=True)

        return await self._write(owe)
