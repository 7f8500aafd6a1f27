"""The customer repository: every MongoDB driver call of the service lives in this module.

motor is deprecated in favour of PyMongo's async API; keeping the driver behind this one
class makes the move to `pymongo.AsyncMongoClient` a one-module change.

Uniqueness is enforced by unique indexes, not by reading first: two concurrent inserts of
one email both pass any pre-check, and the index rejects the second. Every write touches
one document, so it is atomic: there is never a half-written customer.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection
from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from service.customers.canonical import email_key
from service.errors import FieldError, InvalidFields, MalformedRequest, ServiceUnavailable

COLLECTION = "customers"
Document = dict[str, Any]
# field in the API -> field that carries the unique index
UNIQUE_FIELDS = {"email": "email_key", "cpf": "cpf"}


def redact_url(url: str) -> str:
    """The URL without its user:password part, for messages and logs."""
    return re.sub(r"//[^/@]*@", "//", url, count=1)


class DatabaseUnavailable(ServiceUnavailable):
    default_detail = "The database is not reachable; nothing was stored."


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


def encode_cursor(last_id: ObjectId) -> str:
    return base64.urlsafe_b64encode(last_id.binary).decode().rstrip("=")


def decode_cursor(cursor: str) -> ObjectId:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return ObjectId(raw)
    except (binascii.Error, InvalidId, TypeError, ValueError):
        raise MalformedRequest("The `cursor` is not one this API handed out.") from None


def parse_id(customer_id: str) -> ObjectId | None:
    """The ObjectId behind an API id, or None for a malformed one (answered as 404)."""
    if not ObjectId.is_valid(customer_id) or len(customer_id) != 24:
        return None
    return ObjectId(customer_id)


def _public(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document as the domain sees it: `id` instead of `_id`, no index helpers."""
    out = {key: value for key, value in doc.items() if key not in ("_id", "email_key")}
    out["id"] = str(doc["_id"])
    return out


class CustomerRepository:
    def __init__(self, client: AsyncIOMotorClient[Document], database: str) -> None:
        self._client = client
        self._collection: AsyncIOMotorCollection[Document] = client[database][COLLECTION]

    @classmethod
    def from_url(cls, url: str, database: str) -> CustomerRepository:
        if url.startswith("mongomock://"):
            from mongomock_motor import AsyncMongoMockClient

            return cls(AsyncMongoMockClient(), database)
        # tz_aware: datetimes come back as UTC-aware, the same as they went in.
        client: AsyncIOMotorClient[Document] = AsyncIOMotorClient(
            url, tz_aware=True, serverSelectionTimeoutMS=3000
        )
        return cls(client, database)

    async def ensure_indexes(self) -> None:
        with _unavailable_on_driver_error():
            for index_field in UNIQUE_FIELDS.values():
                await self._collection.create_index(
                    [(index_field, ASCENDING)], unique=True, name=f"{index_field}_unique"
                )

    async def ping(self) -> None:
        with _unavailable_on_driver_error():
            await self._client.admin.command("ping")

    def close(self) -> None:
        self._client.close()

    async def insert(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        now = _now()
        doc = {
            **customer,
            "email_key": email_key(customer["email"]),
            "created_at": now,
            "updated_at": now,
        }
        with _unavailable_on_driver_error():
            try:
                result = await self._collection.insert_one(doc)
            except DuplicateKeyError as exc:
                raise await self._duplicate_error(exc, doc, exclude=None) from None
        doc["_id"] = result.inserted_id
        return _public(doc)

    async def get(self, customer_id: str) -> dict[str, Any] | None:
        oid = parse_id(customer_id)
        if oid is None:
            return None
        with _unavailable_on_driver_error():
            doc = await self._collection.find_one({"_id": oid})
        return None if doc is None else _public(doc)

    async def update(self, customer_id: str, changes: Mapping[str, Any]) -> dict[str, Any] | None:
        oid = parse_id(customer_id)
        if oid is None:
            return None
        update = {**changes, "updated_at": _now()}
        if "email" in changes:
            update["email_key"] = email_key(changes["email"])
        with _unavailable_on_driver_error():
            try:
                doc = await self._collection.find_one_and_update(
                    {"_id": oid}, {"$set": update}, return_document=ReturnDocument.AFTER
                )
            except DuplicateKeyError as exc:
                raise await self._duplicate_error(exc, update, exclude=oid) from None
        return None if doc is None else _public(doc)

    async def delete(self, customer_id: str) -> bool:
        oid = parse_id(customer_id)
        if oid is None:
            return False
        with _unavailable_on_driver_error():
            result = await self._collection.delete_one({"_id": oid})
        return bool(result.deleted_count)

    async def page(
        self, *, limit: int, cursor: str | None = None, filters: Mapping[str, str] | None = None
    ) -> Page:
        """Customers in creation order (ObjectId order), `limit` at a time.

        `filters` are exact matches on `email` and/or `cpf`, already canonical.
        """
        query: dict[str, Any] = {}
        for name, value in (filters or {}).items():
            query[UNIQUE_FIELDS[name]] = _index_value(name, value)
        if cursor is not None:
            query["_id"] = {"$gt": decode_cursor(cursor)}
        with _unavailable_on_driver_error():
            docs = await (
                self._collection.find(query).sort("_id", ASCENDING).limit(limit + 1)
            ).to_list(length=limit + 1)
        has_more = len(docs) > limit
        docs = docs[:limit]
        next_cursor = encode_cursor(docs[-1]["_id"]) if has_more else None
        return Page([_public(doc) for doc in docs], next_cursor)

    async def exists(self, field: str, value: str, *, exclude_id: str | None = None) -> bool:
        """Whether another customer already has this email or cpf (a friendly pre-check;
        the unique index is what guarantees it)."""
        excluded = parse_id(exclude_id) if exclude_id else None
        with _unavailable_on_driver_error():
            return await self._taken(UNIQUE_FIELDS[field], _index_value(field, value), excluded)

    async def _taken(self, index_field: str, value: Any, exclude: ObjectId | None) -> bool:
        query: dict[str, Any] = {index_field: value}
        if exclude is not None:
            query["_id"] = {"$ne": exclude}
        return await self._collection.count_documents(query, limit=1) > 0

    async def _duplicate_error(
        self, exc: DuplicateKeyError, doc: Mapping[str, Any], exclude: ObjectId | None
    ) -> InvalidFields:
        """Name every field that clashes. The error's keyPattern names only one index (and
        mongomock's can be wrong), so ask the indexes which values are taken."""
        taken = [
            field
            for field, index_field in UNIQUE_FIELDS.items()
            if index_field in doc and await self._taken(index_field, doc[index_field], exclude)
        ]
        if not taken:  # the clashing customer was deleted meanwhile: trust the driver
            pattern = (exc.details or {}).get("keyPattern", {})
            taken = [f for f, index_field in UNIQUE_FIELDS.items() if index_field in pattern]
        return InvalidFields([already_exists(field) for field in taken or ["email"]])


def _index_value(field: str, value: str) -> str:
    """What the unique index of `field` compares: the email's key, the CPF as it is."""
    return email_key(value) if field == "email" else value


@contextmanager
def _unavailable_on_driver_error() -> Iterator[None]:
    """Any driver failure (server down, timeout, network) is a 503: nothing was stored."""
    try:
        yield
    except PyMongoError:
        raise DatabaseUnavailable() from None


def already_exists(field: str) -> FieldError:
    return FieldError(field, "already_exists", f"A customer with this {field} already exists.")


def _now() -> datetime:
    # MongoDB keeps milliseconds; truncate so what we return equals what we stored.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
