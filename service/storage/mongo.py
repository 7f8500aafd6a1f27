"""MongoDB adapter on PyMongo's async API (`pymongo.AsyncMongoClient`), also serving
`mongomock://` (in memory) with mongomock-motor's client as the stand-in.

Every MongoDB driver call of the service lives in this module and its `mongo_*` siblings
(documents, outbox, audit, events, idempotency, common), restricted to the calls both
clients accept (no async mock of PyMongo exists; mongomock-motor mirrors the same shapes).
Every write touches one document, so it is atomic: there is never a half-written customer.

The journal (audit entry, event) of a write goes into the same document, in its `_outbox`
array, by the same single-document write: a change never exists without its journal, on a
replica set or a lone server alike, and mongomock (which has no transactions) runs the
same code. `drain` then moves the outbox to the `audit` collection (idempotent: an entry
already there by id is not added twice) and `$pull`s it; it runs after each write, every
second from the server, and before every read of the trail. A deleted customer is marked
`_deleted` (invisible to every read) until the drain has moved its journal, then removed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from inspect import isawaitable
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from service.customers.errors import DuplicateCustomer
from service.customers.lifecycle import ANONYMIZED, PURGE, STATUSES, UPDATE, Transition
from service.customers.model import (
    INDEXED,
    UNIQUE_FIELDS,
    Customer,
    Draft,
    changed_fields,
    complete,
    now,
    transitioned,
)
from service.settings import SettingsError
from service.storage.base import (
    Change,
    DatabaseUnavailable,
    Page,
    decode_cursor,
    encode_cursor,
    index_value,
)
from service.storage.mongo_audit import MongoAuditStore
from service.storage.mongo_common import HEALTH, Document, unavailable_on_driver_error
from service.storage.mongo_documents import (
    LIVE,
    STORAGE_ONLY,
    object_id,
    sealed_cpf,
    set_fields,
    to_customer,
    to_document,
)
from service.storage.mongo_events import MongoEventStore
from service.storage.mongo_idempotency import MongoIdempotencyStore
from service.storage.mongo_outbox import MongoOutbox, outbox_items
from service.storage.pii import PiiCodec, SealedCpf
from service.storage_url import scheme_of

COLLECTION = "customers"
IDEMPOTENCY_COLLECTION = "idempotency_keys"
AUDIT_COLLECTION = "audit"
# Unique only where the value is there: an anonymized customer has none (the fields are
# unset), so it clashes with nobody and its email and CPF are free again.
_PARTIAL = {index_field: {index_field: {"$type": "string"}} for index_field in INDEXED.values()}
# pages of some statuses; the retention sweep
_LIFECYCLE_INDEXES = ("status_id", "status_purge_after")
# A conditional transition that lost a race reads again; each retry means another write won.
_TRANSITION_ATTEMPTS = 5


class MongoRepository:
    def __init__(self, client: AsyncMongoClient[Document], database: str, codec: PiiCodec) -> None:
        self._client = client
        self._codec = codec
        self._collection: AsyncCollection[Document] = client[database][COLLECTION]
        self.health = HEALTH
        self.idempotency = MongoIdempotencyStore(client[database][IDEMPOTENCY_COLLECTION])
        self.audit = MongoAuditStore(client[database][AUDIT_COLLECTION], self.drain)
        self.events = MongoEventStore(client[database], self.drain)
        self._outbox = MongoOutbox(self._collection, self.audit, self.events)

    @classmethod
    def from_url(cls, url: str, database: str, codec: PiiCodec) -> MongoRepository:
        scheme = scheme_of(url)
        if scheme is not None and scheme.in_memory:
            try:
                from mongomock_motor import AsyncMongoMockClient
            except ImportError:
                raise SettingsError(
                    "storage.url mongomock:// needs the test extra: "
                    "pip install 'customers-api[mongomock]'"
                ) from None
            mock: Any = AsyncMongoMockClient()  # same call shapes as AsyncMongoClient
            return cls(mock, database, codec)
        # tz_aware: datetimes come back as UTC-aware, the same as they went in.
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            url, tz_aware=True, serverSelectionTimeoutMS=3000
        )
        return cls(client, database, codec)

    async def ensure_schema(self) -> None:
        with unavailable_on_driver_error():
            indexes = await self._collection.index_information()
            for index_field in INDEXED.values():
                name = f"{index_field}_unique"
                current = indexes.get(name, {}).get("partialFilterExpression")
                if name in indexes and current != _PARTIAL[index_field]:
                    await self._collection.drop_index(name)  # the index before lifecycles
                await self._collection.create_index(
                    [(index_field, ASCENDING)],
                    unique=True,
                    name=name,
                    partialFilterExpression=_PARTIAL[index_field],
                )
            # `pii_key_ids` (distinct) and `reencrypt_pii` read by it
            await self._collection.create_index([("cpf_key_id", ASCENDING)], name="cpf_key_id")
            # pages of some statuses: MongoDB merges the (status, _id) ranges in _id order
            await self._collection.create_index(
                [("status", ASCENDING), ("_id", ASCENDING)], name=_LIFECYCLE_INDEXES[0]
            )
            # the retention sweep: closed customers by deadline
            await self._collection.create_index(
                [("status", ASCENDING), ("purge_after", ASCENDING)],
                name=_LIFECYCLE_INDEXES[1],
            )
            # documents stored before the lifecycle existed are active
            await self._collection.update_many(
                {"status": {"$exists": False}}, {"$set": {"status": "active"}}
            )
            # the drain finds documents with a pending journal without a scan
            await self._collection.create_index(
                [("_outbox.id", ASCENDING)], sparse=True, name="outbox_pending"
            )
            await self.audit.ensure_schema()
            await self.idempotency.ensure_schema()
            await self.events.ensure_schema()

    async def ping(self) -> None:
        with unavailable_on_driver_error():
            await self._client.admin.command("ping")

    async def close(self) -> None:
        closing = self._client.close()  # a coroutine for PyMongo; mongomock's returns None
        if isawaitable(closing):
            await closing

    async def check(self) -> list[str]:
        with unavailable_on_driver_error():
            indexes = await self._collection.index_information()
        return [
            f"missing unique index {name}"
            for field, name in ((field, f"{field}_unique") for field in INDEXED.values())
            if not indexes.get(name, {}).get("unique")
            or indexes[name].get("partialFilterExpression") != _PARTIAL[field]
        ] + [f"missing index {name}" for name in _LIFECYCLE_INDEXES if name not in indexes]

    async def insert(self, customer: Draft, change: Change) -> Customer:
        stamp = now()
        fresh = complete({**customer, "created_at": stamp, "updated_at": stamp})
        doc = to_document(fresh, self._codec)
        doc.setdefault("_id", ObjectId())  # an id in the draft is the Idempotency-Key claim's
        doc["_outbox"] = outbox_items(change, doc["_id"])
        with unavailable_on_driver_error(write=True):
            try:
                await self._collection.insert_one(doc)
            except DuplicateKeyError as exc:
                raise await self._duplicate(exc, doc, exclude=None) from None
            await self._outbox.drain_soon(doc)
        return to_customer(doc, self._codec)

    async def get(self, customer_id: str) -> Customer | None:
        oid = object_id(customer_id)
        if oid is None:
            return None
        with unavailable_on_driver_error():
            doc = await self._collection.find_one({"_id": oid, **LIVE})
        return None if doc is None else to_customer(doc, self._codec)

    async def update(self, customer_id: str, changes: Draft, change: Change) -> Customer | None:
        oid = object_id(customer_id)
        if oid is None:
            return None
        fields = {**set_fields(changes, self._codec), "updated_at": now()}
        journal = {"_outbox": {"$each": outbox_items(change, oid)}}
        with unavailable_on_driver_error(write=True):
            try:
                doc = await self._collection.find_one_and_update(
                    {"_id": oid, **LIVE, "status": {"$in": sorted(UPDATE.sources)}},
                    {"$set": fields, "$push": journal},
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError as exc:
                raise await self._duplicate(exc, fields, exclude=oid) from None
            if doc is None:  # unknown, or not active: say which
                current = await self._collection.find_one({"_id": oid, **LIVE}, {"status": 1})
                if current is not None:
                    UPDATE.check(current["status"])
            else:
                await self._outbox.drain_soon(doc)
        return None if doc is None else to_customer(doc, self._codec)

    async def delete(self, customer_id: str, change: Change) -> bool:
        oid = object_id(customer_id)
        if oid is None:
            return False
        with unavailable_on_driver_error(write=True):
            doc = await self._collection.find_one_and_update(
                {"_id": oid, **LIVE},
                {
                    "$set": {"_deleted": True},
                    "$push": {"_outbox": {"$each": outbox_items(change, oid)}},
                },
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                await self._outbox.drain_soon(doc)
        return doc is not None

    async def drain(self) -> int:
        """Move every pending journal to its collection; how many documents had one."""
        return await self._outbox.drain()

    async def page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        filters: Mapping[str, str] | None = None,
        statuses: Collection[str] | None = None,
    ) -> Page[Customer]:
        query: dict[str, Any] = {
            INDEXED[name]: index_value(name, value, self._codec)
            for name, value in (filters or {}).items()
        } | LIVE
        if cursor is not None:
            query["_id"] = {"$gt": ObjectId(decode_cursor(cursor))}
        if statuses is not None and not set(STATUSES) <= set(statuses):
            query["status"] = {"$in": sorted(set(statuses))}
        with unavailable_on_driver_error():
            docs = await (
                self._collection.find(query).sort("_id", ASCENDING).limit(limit + 1)
            ).to_list(length=limit + 1)
        customers = [to_customer(doc, self._codec) for doc in docs[:limit]]
        has_more = len(docs) > limit
        return Page(customers, encode_cursor(customers[-1]["id"]) if has_more else None)

    async def transition(
        self,
        customer_id: str,
        transition: Transition,
        change: Change,
        *,
        closed_days: int,
        reason: str | None = None,
    ) -> Customer | None:
        oid = object_id(customer_id)
        if oid is None:
            return None
        with unavailable_on_driver_error():
            for _ in range(_TRANSITION_ATTEMPTS):
                doc = await self._collection.find_one({"_id": oid, **LIVE})
                if doc is None:
                    return None
                after = await self._apply(transition, change, doc, closed_days, reason)
                if after is not None:
                    return after
        raise DatabaseUnavailable("The customer kept changing; nothing was changed, retry.")

    async def _apply(
        self,
        transition: Transition,
        change: Change,
        doc: Document,
        closed_days: int,
        reason: str | None,
    ) -> Customer | None:
        """Write `doc` after `transition`, its journal in the same document's outbox, if it is
        still as read (compare-and-set on status and updated_at: one atomic single-document
        write); None when another write won.
        An anonymization deletes the customer's Idempotency-Key answers first, so a kill
        between the two leaves a closed customer that the next run anonymizes."""
        current = to_customer(doc, self._codec)
        after = transitioned(transition, current, now(), closed_days=closed_days, reason=reason)
        change = replace(change, fields=changed_fields(current, after))
        update: dict[str, Any] = {
            "$set": to_document(after, self._codec),
            "$push": {"_outbox": {"$each": outbox_items(change, doc["_id"])}},
        }
        del update["$set"]["_id"]
        if after["status"] == ANONYMIZED:
            await self.idempotency.forget_customer(current["id"])
            update["$unset"] = dict.fromkeys(STORAGE_ONLY, "")
        written = await self._collection.find_one_and_update(
            {"_id": doc["_id"], "status": doc["status"], "updated_at": doc["updated_at"]},
            update,
            projection={"_outbox": 1, "_deleted": 1},
            return_document=ReturnDocument.AFTER,
        )
        if written is None:
            return None
        await self._outbox.drain_soon(written)
        return after

    async def purge(self, due: datetime, limit: int, change: Change) -> int:
        query = {"status": "closed", "purge_after": {"$lte": due}, **LIVE}
        anonymized = 0
        with unavailable_on_driver_error():
            docs = await self._collection.find(query).limit(limit).to_list(length=limit)
            for doc in docs:  # each document atomically; a lost race is another's write
                anonymized += await self._apply(PURGE, change, doc, 0, None) is not None
        return anonymized

    async def exists(self, field: str, value: str, *, exclude_id: str | None = None) -> bool:
        with unavailable_on_driver_error():
            return await self._taken(
                INDEXED[field], index_value(field, value, self._codec), object_id(exclude_id)
            )

    async def pii_key_ids(self) -> set[str]:
        with unavailable_on_driver_error():
            return set(await self._collection.distinct("cpf_key_id"))

    async def reencrypt_pii(self, limit: int) -> int:
        stale = {"cpf_key_id": {"$ne": self._codec.active_key_id}}
        fields = {"cpf_ciphertext": 1, "cpf_key_id": 1, "cpf_index": 1}
        resealed = 0
        with unavailable_on_driver_error(write=True):
            docs = await self._collection.find(stale, fields).limit(limit).to_list(length=limit)
            for doc in docs:
                sealed = SealedCpf(doc["cpf_ciphertext"], doc["cpf_key_id"], doc["cpf_index"])
                fresh = sealed_cpf(self._codec.decrypt_cpf(sealed), self._codec)
                result = await self._collection.update_one(
                    {"_id": doc["_id"], "cpf_ciphertext": sealed.ciphertext}, {"$set": fresh}
                )
                resealed += result.modified_count
        return resealed

    async def restore(self, customers: Sequence[Customer], change: Change) -> int:
        docs = [
            {
                **to_document(complete(customer), self._codec),
                "_outbox": outbox_items(change, customer["id"]),
            }
            for customer in customers
        ]
        with unavailable_on_driver_error(write=True):
            stored = await self._collection.distinct(
                "_id", {"_id": {"$in": [d["_id"] for d in docs]}}
            )
            fresh = [doc for doc in docs if doc["_id"] not in set(stored)]
            for doc in fresh:
                try:
                    await self._collection.insert_one(doc)
                except DuplicateKeyError as exc:
                    raise await self._duplicate(exc, doc, exclude=doc["_id"]) from None
                await self._outbox.drain_soon(doc)
        return len(fresh)

    async def _taken(self, index_field: str, value: Any, exclude: ObjectId | None) -> bool:
        query: dict[str, Any] = {index_field: value}
        if exclude is not None:
            query["_id"] = {"$ne": exclude}
        return await self._collection.count_documents(query, limit=1) > 0

    async def _duplicate(
        self, exc: DuplicateKeyError, doc: Mapping[str, Any], exclude: ObjectId | None
    ) -> DuplicateCustomer:
        """Name every field that clashes. The error's keyPattern names only one index (and
        mongomock's can be wrong), so ask the indexes which values are taken."""
        taken = [
            field
            for field in UNIQUE_FIELDS
            if INDEXED[field] in doc
            and await self._taken(INDEXED[field], doc[INDEXED[field]], exclude)
        ]
        if not taken:  # the clashing customer was deleted meanwhile: trust the driver
            pattern = (exc.details or {}).get("keyPattern", {})
            taken = [field for field in UNIQUE_FIELDS if INDEXED[field] in pattern]
        return DuplicateCustomer(taken or ["email"])
