"""MongoDB adapter (motor), also serving `mongomock://` (mongomock-motor, in memory).

Every MongoDB driver call of the service lives in this module. motor is deprecated in
favour of PyMongo's async API; moving to `pymongo.AsyncMongoClient` is a change here only.
Every write touches one document, so it is atomic: there is never a half-written customer.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from bson import ObjectId
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection
from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from service.customers.canonical import email_key
from service.customers.errors import DuplicateCustomer
from service.customers.lifecycle import ANONYMIZED, PURGE, STATUSES, UPDATE, Transition
from service.customers.model import (
    CUSTOMER_FIELDS,
    INDEXED,
    UNIQUE_FIELDS,
    Customer,
    Draft,
    complete,
    now,
    transitioned,
    utc,
    with_utc,
)
from service.storage.base import (
    DatabaseUnavailable,
    Page,
    decode_cursor,
    encode_cursor,
    index_value,
    parse_id,
)
from service.storage.idempotency import (
    IN_FLIGHT_LEASE,
    RESPONSE_TTL,
    Claim,
    ClaimState,
    existing_claim,
)
from service.storage.pii import PiiCodec, SealedCpf
from service.storage_url import scheme_of

COLLECTION = "customers"
IDEMPOTENCY_COLLECTION = "idempotency_keys"
Document = dict[str, Any]
# fields of a document that only storage sees: the email key and the sealed CPF
_STORAGE_ONLY = ("email_key", "cpf_ciphertext", "cpf_key_id", "cpf_index")
# Unique only where the value is there: an anonymized customer has none (the fields are
# unset), so it clashes with nobody and its email and CPF are free again.
_PARTIAL = {index_field: {index_field: {"$type": "string"}} for index_field in INDEXED.values()}
# A conditional transition that lost a race reads again; each retry means another write won.
_TRANSITION_ATTEMPTS = 5


def _to_customer(doc: Mapping[str, Any], codec: PiiCodec) -> Customer:
    """A stored document as the domain sees it: `id` instead of `_id`, the CPF in clear,
    UTC-aware datetimes, the fields of the field table only (defaults for those the
    document predates)."""
    customer = with_utc(doc)
    customer["id"] = str(doc["_id"])
    customer["cpf"] = (
        codec.decrypt_cpf(SealedCpf(doc["cpf_ciphertext"], doc["cpf_key_id"], doc["cpf_index"]))
        if "cpf_ciphertext" in doc
        else None
    )
    return complete(customer)


def _sealed_cpf(cpf: str, codec: PiiCodec) -> Document:
    sealed = codec.encrypt_cpf(cpf)
    return {
        "cpf_ciphertext": sealed.ciphertext,
        "cpf_key_id": sealed.key_id,
        "cpf_index": sealed.index,
    }


# what a document holds besides `_id`, the email key and the sealed CPF
_IN_DOCUMENT = tuple(f.name for f in CUSTOMER_FIELDS if f.name != "id" and not f.spec.sealed)


def _to_document(customer: Mapping[str, Any], codec: PiiCodec) -> Document:
    """A customer as a document; an anonymized one has no email key and no sealed CPF."""
    doc = {name: customer[name] for name in _IN_DOCUMENT if name in customer}
    if customer["cpf"] is not None:
        doc |= _sealed_cpf(customer["cpf"], codec)
    if customer["email"] is not None:
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


def _object_id(customer_id: str | None) -> ObjectId | None:
    canonical = parse_id(customer_id) if customer_id else None
    return None if canonical is None else ObjectId(canonical)


class MongoRepository:
    def __init__(
        self, client: AsyncIOMotorClient[Document], database: str, codec: PiiCodec
    ) -> None:
        self._client = client
        self._codec = codec
        self._collection: AsyncIOMotorCollection[Document] = client[database][COLLECTION]
        self.idempotency = MongoIdempotencyStore(client[database][IDEMPOTENCY_COLLECTION])

    @classmethod
    def from_url(cls, url: str, database: str, codec: PiiCodec) -> MongoRepository:
        scheme = scheme_of(url)
        if scheme is not None and scheme.in_memory:
            from mongomock_motor import AsyncMongoMockClient

            return cls(AsyncMongoMockClient(), database, codec)
        # tz_aware: datetimes come back as UTC-aware, the same as they went in.
        client: AsyncIOMotorClient[Document] = AsyncIOMotorClient(
            url, tz_aware=True, serverSelectionTimeoutMS=3000
        )
        return cls(client, database, codec)

    async def ensure_schema(self) -> None:
        with _unavailable_on_driver_error():
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
                [("status", ASCENDING), ("_id", ASCENDING)], name="status_id"
            )
            # the retention sweep: closed customers by deadline
            await self._collection.create_index(
                [("status", ASCENDING), ("purge_after", ASCENDING)], name="status_purge_after"
            )
            # documents stored before the lifecycle existed are active
            await self._collection.update_many(
                {"status": {"$exists": False}}, {"$set": {"status": "active"}}
            )
            await self.idempotency.ensure_schema()

    async def ping(self) -> None:
        with _unavailable_on_driver_error():
            await self._client.admin.command("ping")

    async def close(self) -> None:
        self._client.close()

    async def check(self) -> list[str]:
        with _unavailable_on_driver_error():
            indexes = await self._collection.index_information()
        return [
            f"missing unique index {name}"
            for field, name in ((field, f"{field}_unique") for field in INDEXED.values())
            if not indexes.get(name, {}).get("unique")
            or indexes[name].get("partialFilterExpression") != _PARTIAL[field]
        ]

    async def insert(self, customer: Draft) -> Customer:
        stamp = now()
        fresh = complete({**customer, "created_at": stamp, "updated_at": stamp})
        doc = _to_document(fresh, self._codec)
        with _unavailable_on_driver_error():
            try:
                result = await self._collection.insert_one(doc)
            except DuplicateKeyError as exc:
                raise await self._duplicate(exc, doc, exclude=None) from None
        doc["_id"] = result.inserted_id
        return _to_customer(doc, self._codec)

    async def get(self, customer_id: str) -> Customer | None:
        oid = _object_id(customer_id)
        if oid is None:
            return None
        with _unavailable_on_driver_error():
            doc = await self._collection.find_one({"_id": oid})
        return None if doc is None else _to_customer(doc, self._codec)

    async def update(self, customer_id: str, changes: Draft) -> Customer | None:
        oid = _object_id(customer_id)
        if oid is None:
            return None
        fields = {**_set_fields(changes, self._codec), "updated_at": now()}
        with _unavailable_on_driver_error():
            try:
                doc = await self._collection.find_one_and_update(
                    {"_id": oid, "status": {"$in": sorted(UPDATE.sources)}},
                    {"$set": fields},
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError as exc:
                raise await self._duplicate(exc, fields, exclude=oid) from None
            if doc is None:  # unknown, or not active: say which
                current = await self._collection.find_one({"_id": oid}, {"status": 1})
                if current is not None:
                    UPDATE.check(current["status"])
        return None if doc is None else _to_customer(doc, self._codec)

    async def delete(self, customer_id: str) -> bool:
        oid = _object_id(customer_id)
        if oid is None:
            return False
        with _unavailable_on_driver_error():
            result = await self._collection.delete_one({"_id": oid})
        return bool(result.deleted_count)

    async def page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        filters: Mapping[str, str] | None = None,
        statuses: Collection[str] | None = None,
    ) -> Page:
        query: dict[str, Any] = {
            INDEXED[name]: index_value(name, value, self._codec)
            for name, value in (filters or {}).items()
        }
        if cursor is not None:
            query["_id"] = {"$gt": ObjectId(decode_cursor(cursor))}
        if statuses is not None and not set(STATUSES) <= set(statuses):
            query["status"] = {"$in": sorted(set(statuses))}
        with _unavailable_on_driver_error():
            docs = await (
                self._collection.find(query).sort("_id", ASCENDING).limit(limit + 1)
            ).to_list(length=limit + 1)
        customers = [_to_customer(doc, self._codec) for doc in docs[:limit]]
        has_more = len(docs) > limit
        return Page(customers, encode_cursor(customers[-1]["id"]) if has_more else None)

    async def transition(
        self,
        customer_id: str,
        transition: Transition,
        *,
        closed_days: int,
        reason: str | None = None,
    ) -> Customer | None:
        oid = _object_id(customer_id)
        if oid is None:
            return None
        with _unavailable_on_driver_error():
            for _ in range(_TRANSITION_ATTEMPTS):
                doc = await self._collection.find_one({"_id": oid})
                if doc is None:
                    return None
                after = await self._apply(transition, doc, closed_days, reason)
                if after is not None:
                    return after
        raise DatabaseUnavailable("The customer kept changing; nothing was changed, retry.")

    async def _apply(
        self, transition: Transition, doc: Document, closed_days: int, reason: str | None
    ) -> Customer | None:
        """Write `doc` after `transition` if it is still as read (compare-and-set on status
        and updated_at: one atomic single-document write); None when another write won.
        An anonymization deletes the customer's Idempotency-Key answers first, so a kill
        between the two leaves a closed customer that the next run anonymizes."""
        current = _to_customer(doc, self._codec)
        after = transitioned(transition, current, now(), closed_days=closed_days, reason=reason)
        update: dict[str, Any] = {"$set": _to_document(after, self._codec)}
        del update["$set"]["_id"]
        if after["status"] == ANONYMIZED:
            await self.idempotency.forget_customer(current["id"])
            update["$unset"] = dict.fromkeys(_STORAGE_ONLY, "")
        result = await self._collection.update_one(
            {"_id": doc["_id"], "status": doc["status"], "updated_at": doc["updated_at"]},
            update,
        )
        return after if result.modified_count else None

    async def purge(self, due: datetime, limit: int) -> int:
        query = {"status": "closed", "purge_after": {"$lte": due}}
        anonymized = 0
        with _unavailable_on_driver_error():
            docs = await self._collection.find(query).limit(limit).to_list(length=limit)
            for doc in docs:  # each document atomically; a lost race is another's write
                anonymized += await self._apply(PURGE, doc, 0, None) is not None
        return anonymized

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

    async def restore(self, customers: Sequence[Customer]) -> int:
        docs = [_to_document(complete(customer), self._codec) for customer in customers]
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


class MongoIdempotencyStore:
    """Idempotency records in their own collection: the unique `_id` makes the claim one
    atomic insert; a TTL index on `expires_at` deletes expired records (MongoDB's monitor
    runs every minute, so reads ignore expired records too)."""

    def __init__(self, collection: AsyncIOMotorCollection[Document]) -> None:
        self._collection = collection

    async def ensure_schema(self) -> None:
        await self._collection.create_index(
            [("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at_ttl"
        )
        await self._collection.create_index(
            [("customer_id", ASCENDING)], name="customer_id", sparse=True
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
                if current is not None and utc(current["expires_at"]) > now:
                    return existing_claim(fingerprint, current["fingerprint"], current["response"])
                if current is not None:  # expired: take it over, unless another request did
                    replaced = await self._collection.find_one_and_replace(
                        {"_id": record, "expires_at": current["expires_at"]}, doc
                    )
                    if replaced is not None:
                        return Claim(ClaimState.CLAIMED, token=token)
        return Claim(ClaimState.IN_FLIGHT)

    async def complete(
        self,
        record: str,
        token: str,
        response: str,
        now: datetime,
        customer_id: str | None = None,
    ) -> None:
        kept = {"token": None, "response": response, "expires_at": now + RESPONSE_TTL}
        if customer_id is not None:
            kept["customer_id"] = customer_id
        with _unavailable_on_driver_error():
            await self._collection.update_one({"_id": record, "token": token}, {"$set": kept})

    async def forget_customer(self, customer_id: str) -> None:
        """Delete the answers that hold this customer's data (it is being anonymized)."""
        await self._collection.delete_many({"customer_id": customer_id})

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
