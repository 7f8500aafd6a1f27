"""The events of the MongoDB adapter: the `events` collection, the feed, the deliveries.

A write puts its event into the customer document's `_outbox` (one atomic single-document
write, service/storage/mongo.py); the drain moves it here with `append_event`, which gives
it the position after the newest one. The unique index on `position` makes two drainers
that read the same head collide; the loser reads the new head and tries again. So a
position is taken only once the one before it is stored: a reader never sees position
n + 1 while n is still to come, and a resumed consumer skips nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from service.events.model import CursorExpired, Event
from service.events.store import Delivery, DeliveryStats, FeedPage
from service.storage.mongo_common import Document, unavailable_on_driver_error

_FEED_ID = "feed"
NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # a lease that has lapsed, a dead letter's next_at


def _utc(moment: datetime) -> datetime:
    """mongomock hands datetimes back naive; they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def event_document(event: Event) -> Document:
    """An event as it waits in a customer's `_outbox` (no position yet)."""
    return {
        "_id": event.id,
        "type": event.type,
        "customer_id": event.customer_id,
        "fields": list(event.fields),
        "occurred_at": event.occurred_at,
    }


def _event(doc: Mapping[str, Any]) -> tuple[int, Event]:
    event = Event(
        doc["_id"], doc["type"], doc["customer_id"], tuple(doc["fields"]), _utc(doc["occurred_at"])
    )
    return doc["position"], event


def _delivery(doc: Mapping[str, Any]) -> Delivery:
    return Delivery(
        endpoint=doc["_id"]["endpoint"],
        event_id=doc["_id"]["event"],
        position=doc["position"],
        customer_id=doc["customer_id"],
        body=doc["body"],
        attempts=doc["attempts"],
        occurred_at=_utc(doc["occurred_at"]),
    )


class MongoEventStore:
    def __init__(
        self, database: AsyncDatabase[Document], drain: Callable[[], Awaitable[int]]
    ) -> None:
        """`drain` moves pending outboxes here; the feed runs it before each read, so a
        reader sees every change acknowledged before it asked."""
        self._drain = drain
        self._events: AsyncCollection[Document] = database["events"]
        self._feed: AsyncCollection[Document] = database["event_feed"]
        self._cursors: AsyncCollection[Document] = database["webhook_cursors"]
        self._deliveries: AsyncCollection[Document] = database["webhook_deliveries"]

    async def ensure_schema(self) -> None:
        await self._events.create_index([("position", ASCENDING)], unique=True, name="position")
        await self._events.create_index([("occurred_at", ASCENDING)], name="occurred_at")
        await self._deliveries.create_index(
            [("_id.endpoint", ASCENDING), ("dead", ASCENDING), ("next_at", ASCENDING)],
            name="due",
        )
        await self._deliveries.create_index(
            [
                ("_id.endpoint", ASCENDING),
                ("customer_id", ASCENDING),
                ("dead", ASCENDING),
                ("position", ASCENDING),
            ],
            name="customer_order",
        )

    async def append_event(self, doc: Mapping[str, Any]) -> None:
        """Store an outboxed event at the next position, once (the drain may repeat)."""
        while await self._events.count_documents({"_id": doc["_id"]}, limit=1) == 0:
            newest = await self._events.find_one({}, {"position": 1}, sort=[("position", -1)])
            floor = await self._swept_through()
            position = max(0 if newest is None else newest["position"], floor) + 1
            try:
                await self._events.insert_one({**doc, "position": position})
            except DuplicateKeyError:
                continue  # another drainer took this position (or stored this very event)

    async def _swept_through(self) -> int:
        feed = await self._feed.find_one({"_id": _FEED_ID})
        return 0 if feed is None else int(feed["swept_through"])

    async def page(self, *, after: int | None, limit: int) -> FeedPage:
        await self._drain()
        with unavailable_on_driver_error():
            swept = await self._swept_through()
            if after is None:
                after = swept
            elif after < swept:
                raise CursorExpired(after)
            docs = await (
                self._events.find({"position": {"$gt": after}})
                .sort("position", ASCENDING)
                .limit(limit + 1)
            ).to_list(length=limit + 1)
        return FeedPage([_event(doc) for doc in docs[:limit]], len(docs) > limit, after)

    async def head(self) -> int:
        with unavailable_on_driver_error():
            newest = await self._events.find_one({}, {"position": 1}, sort=[("position", -1)])
            floor = await self._swept_through()
        return max(0 if newest is None else int(newest["position"]), floor)

    async def sweep(self, *, before: datetime, limit: int) -> int:
        with unavailable_on_driver_error():
            docs = await (
                self._events.find({}, {"position": 1, "occurred_at": 1})
                .sort("position", ASCENDING)
                .limit(limit)
            ).to_list(length=limit)
            last = None
            for doc in docs:  # the oldest prefix: the feed has no holes
                if _utc(doc["occurred_at"]) >= before:
                    break
                last = doc["position"]
            if last is None:
                return 0
            await self._feed.update_one(
                {"_id": _FEED_ID}, {"$max": {"swept_through": last}}, upsert=True
            )
            result = await self._events.delete_many({"position": {"$lte": last}})
        return int(result.deleted_count)

    async def start_endpoint(self, endpoint: str) -> None:
        head = await self.head()
        with unavailable_on_driver_error():
            await self._cursors.update_one(
                {"_id": endpoint}, {"$setOnInsert": {"position": head}}, upsert=True
            )

    async def enqueue(self, endpoint: str, types: Sequence[str], *, limit: int) -> int:
        await self._drain()  # also the background drain of outboxes a crash left behind
        with unavailable_on_driver_error():
            cursor = await self._cursors.find_one({"_id": endpoint})
            after = 0 if cursor is None else cursor["position"]
            docs = await (
                self._events.find({"position": {"$gt": after}})
                .sort("position", ASCENDING)
                .limit(limit)
            ).to_list(length=limit)
            events = [_event(doc) for doc in docs]
            await self._owe(endpoint, [pe for pe in events if pe[1].type in types])
            if docs:
                await self._cursors.update_one(
                    {"_id": endpoint}, {"$max": {"position": docs[-1]["position"]}}, upsert=True
                )
        return len(docs)

    async def _owe(
        self, endpoint: str, events: Sequence[tuple[int, Event]], *, again: bool = False
    ) -> int:
        """Add a delivery per event, in position order; `again` resets existing ones."""
        owed = 0
        for position, event in events:
            fresh = {
                "position": position,
                "customer_id": event.customer_id,
                "body": event.to_json(),
                "occurred_at": event.occurred_at,
            }
            retry = {"dead": False, "attempts": 0, "next_at": NEVER, "last_error": None}  # due
            update: Document = {"$setOnInsert": {**fresh, "lease_until": NEVER}}
            if again:
                update["$set"] = retry
            else:
                update["$setOnInsert"] |= retry
            result = await self._deliveries.update_one(
                {"_id": {"endpoint": endpoint, "event": event.id}}, update, upsert=True
            )
            owed += int(result.upserted_id is not None or result.modified_count > 0)
        return owed

    async def claim(
        self, endpoint: str, *, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        claimed: list[Delivery] = []
        with unavailable_on_driver_error():
            candidates = await (
                self._deliveries.find(
                    {
                        "_id.endpoint": endpoint,
                        "dead": False,
                        "next_at": {"$lte": now},
                        "lease_until": {"$lte": now},
                    }
                )
                .sort("position", ASCENDING)
                .limit(limit * 4)
            ).to_list(length=limit * 4)
            for candidate in candidates:
                if len(claimed) == limit:
                    break
                earlier = {
                    "_id.endpoint": endpoint,
                    "customer_id": candidate["customer_id"],
                    "dead": False,
                    "position": {"$lt": candidate["position"]},
                }
                if await self._deliveries.count_documents(earlier, limit=1):
                    continue  # one customer's events go out in order
                doc = await self._deliveries.find_one_and_update(
                    {"_id": candidate["_id"], "dead": False, "lease_until": {"$lte": now}},
                    {"$set": {"lease_owner": owner, "lease_until": lease_until}},
                    return_document=ReturnDocument.AFTER,
                )
                if doc is not None:  # else another process leased it first
                    claimed.append(_delivery(doc))
        return claimed

    def _mine(self, delivery: Delivery, owner: str) -> Document:
        key = {"endpoint": delivery.endpoint, "event": delivery.event_id}
        return {"_id": key, "lease_owner": owner}

    async def delivered(self, delivery: Delivery, *, owner: str) -> None:
        with unavailable_on_driver_error():
            await self._deliveries.delete_one(self._mine(delivery, owner))

    async def failed(
        self, delivery: Delivery, *, owner: str, next_at: datetime | None, error: str
    ) -> None:
        with unavailable_on_driver_error():
            await self._deliveries.update_one(
                self._mine(delivery, owner),
                {
                    "$inc": {"attempts": 1},
                    "$set": {
                        "dead": next_at is None,
                        "next_at": next_at or NEVER,
                        "last_error": error,
                        "lease_owner": None,
                        "lease_until": NEVER,
                    },
                },
            )

    async def postpone(self, delivery: Delivery, *, owner: str, next_at: datetime) -> None:
        with unavailable_on_driver_error():
            await self._deliveries.update_one(
                self._mine(delivery, owner),
                {"$set": {"next_at": next_at, "lease_owner": None, "lease_until": NEVER}},
            )

    async def stats(self, endpoint: str) -> DeliveryStats:
        with unavailable_on_driver_error():
            pending = {"_id.endpoint": endpoint, "dead": False}
            count = await self._deliveries.count_documents(pending)
            dead = await self._deliveries.count_documents({"_id.endpoint": endpoint, "dead": True})
            oldest = await self._deliveries.find_one(
                pending, {"occurred_at": 1}, sort=[("occurred_at", ASCENDING)]
            )
        return DeliveryStats(count, dead, None if oldest is None else _utc(oldest["occurred_at"]))

    async def replay(self, endpoint: str, types: Sequence[str], *, since: datetime) -> int:
        with unavailable_on_driver_error():
            docs = await (
                self._events.find(
                    {"occurred_at": {"$gte": since}, "type": {"$in": list(types)}}
                ).sort("position", ASCENDING)
            ).to_list(length=None)
            return await self._owe(endpoint, [_event(doc) for doc in docs], again=True)
