"""The audit trail of the MongoDB adapter: the `audit` collection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from service.audit.chain import GENESIS, Entry, chained
from service.storage.base import Page, decode_position, encode_position
from service.storage.mongo_common import Document, unavailable_on_driver_error


def _audit_entry(doc: Mapping[str, Any]) -> Entry:
    entry = {key: value for key, value in doc.items() if key not in ("_id", "seq")}
    return {"id": doc["_id"], **entry}


class MongoAuditStore:
    """The `audit` collection: `seq` (unique) is the chain position. Entries arrive from the
    customers' outboxes (the repository's drain) and from `append`; reads drain first."""

    def __init__(
        self, collection: AsyncCollection[Document], drain: Callable[[], Awaitable[int]]
    ) -> None:
        self._collection = collection
        self._drain = drain  # the repository's: moves pending outbox entries here

    async def ensure_schema(self) -> None:
        await self._collection.create_index([("seq", ASCENDING)], unique=True, name="seq_unique")
        for by in ("customer_id", "actor"):
            await self._collection.create_index(
                [(by, ASCENDING), ("seq", DESCENDING)], name=f"{by}_newest_first"
            )

    async def append(self, entries: Sequence[Entry]) -> None:
        with unavailable_on_driver_error():
            for entry in entries:
                await self.append_one(entry)

    async def append_one(self, entry: Entry) -> None:
        """Link `entry` after the chain's head, unless it is there already (a drain that
        stopped before its `$pull`). The unique `seq` makes two drainers that read the same
        head collide; the loser reads the new head and tries again."""
        while await self._collection.count_documents({"_id": entry["id"]}, limit=1) == 0:
            head = await self._collection.find_one({}, {"seq": 1, "hash": 1}, sort=[("seq", -1)])
            seq, prev_hash = (0, GENESIS) if head is None else (head["seq"], head["hash"])
            linked = chained(entry, prev_hash)
            document = {"_id": linked.pop("id"), "seq": seq + 1, **linked}
            try:
                await self._collection.insert_one(document)
            except DuplicateKeyError:
                continue  # another drainer took this position (or this very entry)

    async def page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        customer_id: str | None = None,
        actor: str | None = None,
    ) -> Page[Entry]:
        query: dict[str, Any] = {"customer_id": customer_id} if actor is None else {"actor": actor}
        if cursor is not None:
            query["seq"] = {"$lt": decode_position(cursor)}
        await self._drain()
        with unavailable_on_driver_error():
            docs = await (
                self._collection.find(query).sort("seq", DESCENDING).limit(limit + 1)
            ).to_list(length=limit + 1)
        has_more = len(docs) > limit
        next_cursor = encode_position(docs[limit - 1]["seq"]) if has_more else None
        return Page([_audit_entry(doc) for doc in docs[:limit]], next_cursor)

    async def drain(self) -> int:
        return await self._drain()

    async def chain(self) -> AsyncIterator[Entry]:
        await self._drain()
        with unavailable_on_driver_error():
            async for doc in self._collection.find({}).sort("seq", ASCENDING):
                yield _audit_entry(doc)
