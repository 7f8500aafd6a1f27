"""The same-document outbox of the MongoDB adapter: a write `$push`es its journal (audit
entry, event) into the customer document's `_outbox` array, in the one atomic write of the
change; the drain moves the items to the `audit` / `events` collections (idempotent by id)
and `$pull`s them. A deleted customer's document goes once its journal is out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from service.storage.base import Change
from service.storage.journal import journal_rows
from service.storage.mongo_audit import MongoAuditStore
from service.storage.mongo_common import Document, unavailable_on_driver_error
from service.storage.mongo_events import MongoEventStore, event_document

_PENDING = {"_outbox.id": {"$exists": True}}


def outbox_items(change: Change, customer_id: ObjectId | str) -> list[Document]:
    """The journal of `change` as `_outbox` items (each with the id the drain pulls by)."""
    rows = journal_rows(change, str(customer_id))
    items = [{"id": rows.audit["id"], "audit": rows.audit}]
    if rows.event is not None:
        items.append({"id": rows.event.id, "event": event_document(rows.event)})
    return items


class MongoOutbox:
    """Drains the customers collection's outboxes into the audit and event stores."""

    def __init__(
        self,
        customers: AsyncCollection[Document],
        audit: MongoAuditStore,
        events: MongoEventStore,
    ) -> None:
        self._customers = customers
        self._audit = audit
        self._events = events

    async def drain(self) -> int:
        """Move every pending journal to its collection; how many documents had one."""
        drained = 0
        with unavailable_on_driver_error(write=True):
            async for doc in self._customers.find(_PENDING, {"_outbox": 1, "_deleted": 1}):
                await self._drain_document(doc)
                drained += 1
        return drained

    async def drain_soon(self, doc: Mapping[str, Any]) -> None:
        """Drain right after a write; the write is stored whatever happens here (a failure
        leaves the journal in the outbox, where the next `drain` finds it)."""
        try:
            await self._drain_document(doc)
        except PyMongoError:
            pass

    async def _drain_document(self, doc: Mapping[str, Any]) -> None:
        """Append the document's outbox items (each at most once), then pull them; a deleted
        customer's document goes once its journal is out. Safe to repeat, and to run in
        several processes at once."""
        items = doc.get("_outbox") or []
        for item in items:
            if "audit" in item:
                await self._audit.append_one(item["audit"])
            if "event" in item:
                await self._events.append_event(item["event"])
        if items:
            await self._customers.update_one(
                {"_id": doc["_id"]},
                {"$pull": {"_outbox": {"id": {"$in": [item["id"] for item in items]}}}},
            )
        if doc.get("_deleted"):
            await self._customers.delete_one({"_id": doc["_id"], "_outbox": {"$size": 0}})
