"""MongoDB adapter on PyMongo's async API (`pymongo.AsyncMongoClient`), also serving
`mongomock://` (in memory) with mongomock-motor's client as the stand-in.

Every MongoDB driver call of the service lives in this module, restricted to the calls both
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

import secrets
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from inspect import isawaitable
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from service.audit.chain import GENESIS, Entry, chained
from service.customers.canonical import email_key
from service.customers.errors import DuplicateCustomer
from service.customers.model import Customer
from service.settings import SettingsError
from service.storage.base import (
    UNIQUE_FIELDS,
    Change,
    DatabaseUnavailable,
    Page,
    decode_cursor,
    decode_position,
    encode_cursor,
    encode_position,
    index_value,
    now,
    parse_id,
)
from service.storage.idempotency import (
    IN_FLIGHT_LEASE,
    RESPONSE_TTL,
    Claim,
    ClaimState,
    existing_claim,
)
from service.storage.journal import journal_rows
from service.storage.pii import PiiCodec, SealedCpf

COLLECTION = "customers"
IDEMPOTENCY_COLLECTION = "idempotency_keys"
AUDIT_COLLECTION = "audit"
Document = dict[str, Any]
# domain field -> the document field that carries its unique index
INDEXED = {"email": "email_key", "cpf": "cpf_index"}
# fields the domain never sees: index helpers and the sealed CPF
_STORAGE_ONLY = (
    "_id",
    "email_key",
    "cpf_ciphertext",
    "cpf_key_id",
    "cpf_index",
    "_outbox",
    "_deleted",
)
# what every read of customers adds: a deleted customer waiting for its drain is gone
_LIVE = {"_deleted": {"$exists": False}}
_PENDING = {"_outbox.id": {"$exists": True}}


def _utc(moment: datetime) -> datetime:
    """mongomock hands datetimes back naive; they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _to_customer(doc: Mapping[str, Any], codec: PiiCodec) -> Customer:
    """A stored document as the domain sees it: `id` instead of `_id`, no index helpers,
    the CPF in clear, UTC-aware datetimes."""
    customer = {key: value for key, value in doc.items() if key not in _STORAGE_ONLY}
    customer["id"] = str(doc["_id"])
    customer["cpf"] = codec.decrypt_cpf(
        SealedCpf(doc["cpf_ciphertext"], doc["cpf_key_id"], doc["cpf_index"])
    )
    for stamp in ("created_at", "updated_at"):
        customer[stamp] = _utc(customer[stamp])
    return customer


def _sealed_cpf(cpf: str, codec: PiiCodec) -> Document:
    sealed = codec.encrypt_cpf(cpf)
    return {
        "cpf_ciphertext": sealed.ciphertext,
        "cpf_key_id": sealed.key_id,
        "cpf_index": sealed.index,
    }


def _to_document(customer: Mapping[str, Any], codec: PiiCodec) -> Document:
    doc = {key: value for key, value in customer.items() if key not in ("id", "cpf")}
    doc |= _sealed_cpf(customer["cpf"], codec)
    doc["email_key"] = email_key(customer["email"])
    if "id" in customer:
        doc["_id"] = ObjectId(customer["id"])
    return doc


def _set_fields(changes: Mapping[str, Any], codec: PiiCodec) -> Document:
    """Domain changes as a `$set`: the nested address changes field by field (dotted)."""
    fields = {key: value for key, value in changes.items() if key not in ("address", "cpf")}
    for name, value in (changes.get("address") or {}).items():
        fields[f"address.{name}"] = value
    if "email" in changes:
        fields["email_key"] = email_key(changes["email"])
    if "cpf" in changes:
        fields |= _sealed_cpf(changes["cpf"], codec)
    return fields


def _outbox(change: Change, customer_id: ObjectId | str) -> list[Document]:
    """The journal of `change` as `_outbox` items (each with the id the drain pulls by)."""
    rows = journal_rows(change, str(customer_id))
    items = [{"id": rows.audit["id"], "audit": rows.audit}]
    # issue 17: append {"id": event id, "event": rows.event} when rows.event is not None
    return items


def _object_id(customer_id: str | None) -> ObjectId | None:
    canonical = parse_id(customer_id) if customer_id else None
    return None if canonical is None else ObjectId(canonical)


class MongoRepository:
    def __init__(self, client: AsyncMongoClient[Document], database: str, codec: PiiCodec) -> None:
        self._client = client
        self._codec = codec
        self._collection: AsyncCollection[Document] = client[database][COLLECTION]
        self.idempotency = MongoIdempotencyStore(client[database][IDEMPOTENCY_COLLECTION])
        self.audit = MongoAuditStore(client[database][AUDIT_COLLECTION], self)

    @classmethod
    def from_url(cls, url: str, database: str, codec: PiiCodec) -> MongoRepository:
        if url.startswith("mongomock://"):
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
        with _unavailable_on_driver_error():
            for index_field in INDEXED.values():
                await self._collection.create_index(
                    [(index_field, ASCENDING)], unique=True, name=f"{index_field}_unique"
                )
            # `pii_key_ids` (distinct) and `reencrypt_pii` read by it
            await self._collection.create_index([("cpf_key_id", ASCENDING)], name="cpf_key_id")
            # the drain finds documents with a pending journal without a scan
            await self._collection.create_index(
                [("_outbox.id", ASCENDING)], sparse=True, name="outbox_pending"
            )
            await self.audit.ensure_schema()
            await self.idempotency.ensure_schema()

    async def ping(self) -> None:
        with _unavailable_on_driver_error():
            await self._client.admin.command("ping")

    async def close(self) -> None:
        closing = self._client.close()  # a coroutine for PyMongo; mongomock's returns None
        if isawaitable(closing):
            await closing

    async def check(self) -> list[str]:
        with _unavailable_on_driver_error():
            indexes = await self._collection.index_information()
        return [
            f"missing unique index {name}"
            for name in (f"{field}_unique" for field in INDEXED.values())
            if not indexes.get(name, {}).get("unique")
        ]

    async def insert(self, customer: Customer, change: Change) -> Customer:
        stamp = now()
        doc = _to_document({**customer, "created_at": stamp, "updated_at": stamp}, self._codec)
        doc["_id"] = ObjectId()
        doc["_outbox"] = _outbox(change, doc["_id"])
        with _unavailable_on_driver_error():
            try:
                await self._collection.insert_one(doc)
            except DuplicateKeyError as exc:
                raise await self._duplicate(exc, doc, exclude=None) from None
            await self._drain_soon(doc)
        return _to_customer(doc, self._codec)

    async def get(self, customer_id: str) -> Customer | None:
        oid = _object_id(customer_id)
        if oid is None:
            return None
        with _unavailable_on_driver_error():
            doc = await self._collection.find_one({"_id": oid, **_LIVE})
        return None if doc is None else _to_customer(doc, self._codec)

    async def update(self, customer_id: str, changes: Customer, change: Change) -> Customer | None:
        oid = _object_id(customer_id)
        if oid is None:
            return None
        fields = {**_set_fields(changes, self._codec), "updated_at": now()}
        journal = {"_outbox": {"$each": _outbox(change, oid)}}
        with _unavailable_on_driver_error():
            try:
                doc = await self._collection.find_one_and_update(
                    {"_id": oid, **_LIVE},
                    {"$set": fields, "$push": journal},
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError as exc:
                raise await self._duplicate(exc, fields, exclude=oid) from None
            if doc is not None:
                await self._drain_soon(doc)
        return None if doc is None else _to_customer(doc, self._codec)

    async def delete(self, customer_id: str, change: Change) -> bool:
        oid = _object_id(customer_id)
        if oid is None:
            return False
        with _unavailable_on_driver_error():
            doc = await self._collection.find_one_and_update(
                {"_id": oid, **_LIVE},
                {"$set": {"_deleted": True}, "$push": {"_outbox": {"$each": _outbox(change, oid)}}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                await self._drain_soon(doc)
        return doc is not None

    async def drain(self) -> int:
        """Move every pending journal to its collection; how many documents had one."""
        drained = 0
        with _unavailable_on_driver_error():
            async for doc in self._collection.find(_PENDING, {"_outbox": 1, "_deleted": 1}):
                await self._drain_document(doc)
                drained += 1
        return drained

    async def _drain_soon(self, doc: Mapping[str, Any]) -> None:
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
                await self.audit.append_one(item["audit"])
            # issue 17: move item["event"] to the events collection here
        if items:
            await self._collection.update_one(
                {"_id": doc["_id"]},
                {"$pull": {"_outbox": {"id": {"$in": [item["id"] for item in items]}}}},
            )
        if doc.get("_deleted"):
            await self._collection.delete_one({"_id": doc["_id"], "_outbox": {"$size": 0}})

    async def page(
        self, *, limit: int, cursor: str | None = None, filters: Mapping[str, str] | None = None
    ) -> Page:
        query: dict[str, Any] = {
            INDEXED[name]: index_value(name, value, self._codec)
            for name, value in (filters or {}).items()
        } | _LIVE
        if cursor is not None:
            query["_id"] = {"$gt": ObjectId(decode_cursor(cursor))}
        with _unavailable_on_driver_error():
            docs = await (
                self._collection.find(query).sort("_id", ASCENDING).limit(limit + 1)
            ).to_list(length=limit + 1)
        customers = [_to_customer(doc, self._codec) for doc in docs[:limit]]
        has_more = len(docs) > limit
        return Page(customers, encode_cursor(customers[-1]["id"]) if has_more else None)

    async def exists(self, field: str, value: str, *, exclude_id: str | None = None) -> bool:
        with _unavailable_on_driver_error():
            return await self._taken(
                INDEXED[field], index_value(field, value, self._codec), _object_id(exclude_id)
            )

    async def pii_key_ids(self) -> set[str]:
        with _unavailable_on_driver_error():
            return set(await self._collection.distinct("cpf_key_id"))

    async def reencrypt_pii(self, limit: int) -> int:
        stale = {"cpf_key_id": {"$ne": self._codec.active_key_id}}
        fields = {"cpf_ciphertext": 1, "cpf_key_id": 1, "cpf_index": 1}
        resealed = 0
        with _unavailable_on_driver_error():
            docs = await self._collection.find(stale, fields).limit(limit).to_list(length=limit)
            for doc in docs:
                sealed = SealedCpf(doc["cpf_ciphertext"], doc["cpf_key_id"], doc["cpf_index"])
                fresh = _sealed_cpf(self._codec.decrypt_cpf(sealed), self._codec)
                result = await self._collection.update_one(
                    {"_id": doc["_id"], "cpf_ciphertext": sealed.ciphertext}, {"$set": fresh}
                )
                resealed += result.modified_count
        return resealed

    async def restore(self, customers: Sequence[Customer], change: Change) -> int:
        docs = [
            {**_to_document(customer, self._codec), "_outbox": _outbox(change, customer["id"])}
            for customer in customers
        ]
        with _unavailable_on_driver_error():
            stored = await self._collection.distinct(
                "_id", {"_id": {"$in": [d["_id"] for d in docs]}}
            )
            fresh = [doc for doc in docs if doc["_id"] not in set(stored)]
            for doc in fresh:
                try:
                    await self._collection.insert_one(doc)
                except DuplicateKeyError as exc:
                    raise await self._duplicate(exc, doc, exclude=doc["_id"]) from None
                await self._drain_soon(doc)
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


def _audit_entry(doc: Mapping[str, Any]) -> Entry:
    entry = {key: value for key, value in doc.items() if key not in ("_id", "seq")}
    return {"id": doc["_id"], **entry}


class MongoAuditStore:
    """The `audit` collection: `seq` (unique) is the chain position. Entries arrive from the
    customers' outboxes (the repository's drain) and from `append`; reads drain first."""

    def __init__(self, collection: AsyncCollection[Document], repository: MongoRepository) -> None:
        self._collection = collection
        self._repository = repository

    async def ensure_schema(self) -> None:
        await self._collection.create_index([("seq", ASCENDING)], unique=True, name="seq_unique")
        for by in ("customer_id", "actor"):
            await self._collection.create_index(
                [(by, ASCENDING), ("seq", DESCENDING)], name=f"{by}_newest_first"
            )

    async def append(self, entries: Sequence[Entry]) -> None:
        with _unavailable_on_driver_error():
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
    ) -> Page:
        query: dict[str, Any] = {"customer_id": customer_id} if actor is None else {"actor": actor}
        if cursor is not None:
            query["seq"] = {"$lt": decode_position(cursor)}
        await self._repository.drain()
        with _unavailable_on_driver_error():
            docs = await (
                self._collection.find(query).sort("seq", DESCENDING).limit(limit + 1)
            ).to_list(length=limit + 1)
        has_more = len(docs) > limit
        next_cursor = encode_position(docs[limit - 1]["seq"]) if has_more else None
        return Page([_audit_entry(doc) for doc in docs[:limit]], next_cursor)

    async def chain(self) -> AsyncIterator[Entry]:
        await self._repository.drain()
        with _unavailable_on_driver_error():
            async for doc in self._collection.find({}).sort("seq", ASCENDING):
                yield _audit_entry(doc)


class MongoIdempotencyStore:
    """Idempotency records in their own collection: the unique `_id` makes the claim one
    atomic insert; a TTL index on `expires_at` deletes expired records (MongoDB's monitor
    runs every minute, so reads ignore expired records too)."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def ensure_schema(self) -> None:
        await self._collection.create_index(
            [("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at_ttl"
        )

    async def claim(self, record: str, fingerprint: str, now: datetime) -> Claim:
        token = secrets.token_hex(16)
        doc = {
            "_id": record,
            "fingerprint": fingerprint,
            "token": token,
            "response": None,
            "expires_at": now + IN_FLIGHT_LEASE,
        }
        with _unavailable_on_driver_error():
            for _ in range(3):  # each lost race means another request changed the record
                try:
                    await self._collection.insert_one(doc)
                    return Claim(ClaimState.CLAIMED, token=token)
                except DuplicateKeyError:
                    pass
                current = await self._collection.find_one({"_id": record})
                if current is not None and _utc(current["expires_at"]) > now:
                    return existing_claim(fingerprint, current["fingerprint"], current["response"])
                if current is not None:  # expired: take it over, unless another request did
                    replaced = await self._collection.find_one_and_replace(
                        {"_id": record, "expires_at": current["expires_at"]}, doc
                    )
                    if replaced is not None:
                        return Claim(ClaimState.CLAIMED, token=token)
        return Claim(ClaimState.IN_FLIGHT)

    async def complete(self, record: str, token: str, response: str, now: datetime) -> None:
        with _unavailable_on_driver_error():
            await self._collection.update_one(
                {"_id": record, "token": token},
                {"$set": {"token": None, "response": response, "expires_at": now + RESPONSE_TTL}},
            )

    async def release(self, record: str, token: str) -> None:
        with _unavailable_on_driver_error():
            await self._collection.delete_one({"_id": record, "token": token})

    async def sweep(self, now: datetime) -> int:
        with _unavailable_on_driver_error():
            result = await self._collection.delete_many({"expires_at": {"$lte": now}})
        return result.deleted_count


@contextmanager
def _unavailable_on_driver_error() -> Iterator[None]:
    """Any driver failure (server down, timeout, network) is a 503: nothing was stored."""
    try:
        yield
    except PyMongoError:
        raise DatabaseUnavailable() from None
