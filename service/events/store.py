"""What the feed and the webhook relay need from storage: one contract, an implementation
per adapter (`service/storage/sqlite_events.py`, `service/storage/mongo_events.py`).

Events are written by the repository, in the transaction of their change (the outbox);
this contract only reads them, sweeps them, and keeps each endpoint's deliveries, so that
pending deliveries survive restarts and are shared by every process on the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from service.events.model import Event


@dataclass(frozen=True)
class FeedPage:
    events: list[tuple[int, Event]]  # (position, event), oldest first
    has_more: bool
    after: int  # the position the page starts after (a resume point when `events` is empty)


@dataclass(frozen=True)
class Delivery:
    """One event owed to one endpoint. `body` is the event's JSON as it is sent (kept with
    the delivery, so the retention sweep of the feed never loses a pending delivery)."""

    endpoint: str
    event_id: str
    position: int
    customer_id: str
    body: bytes
    attempts: int
    occurred_at: datetime


@dataclass(frozen=True)
class DeliveryStats:
    pending: int
    dead: int
    oldest_pending: datetime | None  # occurred_at of the oldest event still owed


class EventStore(Protocol):
    async def page(self, *, after: int | None, limit: int) -> FeedPage:
        """Events with a position above `after` (None: from the oldest kept), oldest first.
        Raises CursorExpired when the retention sweep deleted events after `after`."""

    async def head(self) -> int:
        """The position of the newest event (the sweep's floor when none is left; 0: none)."""

    async def sweep(self, *, before: datetime, limit: int) -> int:
        """Delete up to `limit` of the oldest events that occurred before `before`, in
        position order; how many. Run it again until it answers 0."""

    async def start_endpoint(self, endpoint: str) -> None:
        """Give a new endpoint its cursor at the current head (it is owed events from now on;
        `replay` sends older ones). Nothing for an endpoint that has one."""

    async def enqueue(self, endpoint: str, types: Sequence[str], *, limit: int) -> int:
        """Turn up to `limit` events after the endpoint's cursor into deliveries (those of
        `types`), and move the cursor past them; how many events were read."""

    async def claim(
        self, endpoint: str, *, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        """Lease up to `limit` due deliveries of `endpoint` to `owner`: pending, due, not
        leased by anyone else, and each the oldest pending delivery of its customer (so one
        customer's events go out in order). Atomic across processes: a delivery is leased
        to one owner at a time."""

    async def delivered(self, delivery: Delivery, *, owner: str) -> None:
        """Done: forget it (only if `owner` still holds its lease)."""

    async def failed(
        self, delivery: Delivery, *, owner: str, next_at: datetime | None, error: str
    ) -> None:
        """Count the attempt and retry at `next_at`; `None` dead-letters it."""

    async def postpone(self, delivery: Delivery, *, owner: str, next_at: datetime) -> None:
        """Free the lease without an attempt (the endpoint's breaker is open)."""

    async def stats(self, endpoint: str) -> DeliveryStats: ...

    async def replay(self, endpoint: str, types: Sequence[str], *, since: datetime) -> int:
        """Owe `endpoint` again every kept event of `types` that occurred at or after `since`
        (dead letters included, attempts reset); how many."""
