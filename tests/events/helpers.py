"""Writing events straight into an adapter's outbox, as a change's transaction does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.events.model import Event, new_event
from service.storage.base import now


def event(
    customer_id: str = "0" * 24,
    event_type: str = "customer.updated",
    fields: Sequence[str] = ("email",),
    at: datetime | None = None,
) -> Event:
    return new_event(event_type, customer_id, fields, at or now())


async def put_events(repository: Any, events: Sequence[Event]) -> None:
    from service.storage.mongo import MongoRepository
    from service.storage.mongo_events import event_document
    from service.storage.sqlite_events import append_events
    from service.storage.sqlite_schema import transaction

    if isinstance(repository, MongoRepository):
        for item in events:
            await repository.events.append_event(event_document(item))
        return

    def write(connection: Any) -> None:
        with transaction(connection):
            append_events(connection, events)

    await repository._write(write)
