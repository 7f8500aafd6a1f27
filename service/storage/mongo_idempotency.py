"""Idempotency-Key records of the MongoDB adapter, in their own collection."""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from service.customers.model import utc
from service.storage.idempotency import (
    IN_FLIGHT_LEASE,
    MAX_LIVE_KEYS,
    RESPONSE_TTL,
    SWEEP_BATCH,
    Claim,
    ClaimState,
    caller_range,
    existing_claim,
    new_token,
    planned_id,
)
from service.storage.mongo_common import Document, unavailable_on_driver_error


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
        await self._collection.create_index(
            [("customer_id", ASCENDING)], name="customer_id", sparse=True
        )

    async def claim(self, record: str, fingerprint: str, now: datetime) -> Claim:
        """In flight until `lease_until`; the TTL index keeps the record until `expires_at`
        (a day for an in-flight one: it names the customer a retry answers)."""
        token = new_token()
        doc = {
            "_id": record,
            "fingerprint": fingerprint,
            "token": token,
            "response": None,
            "lease_until": now + IN_FLIGHT_LEASE,
            "expires_at": now + IN_FLIGHT_LEASE + RESPONSE_TTL,
        }
        with unavailable_on_driver_error(write=True):
            low, high = caller_range(record)
            live = await self._collection.count_documents(
                {
                    "_id": {"$gte": low, "$lt": high},
                    "$or": [
                        {"lease_until": {"$gt": now}},
                        {"response": {"$ne": None}, "expires_at": {"$gt": now}},
                    ],
                },
                limit=MAX_LIVE_KEYS,
            )
            if live >= MAX_LIVE_KEYS and await self._collection.find_one({"_id": record}) is None:
                return Claim(ClaimState.TOO_MANY)
            for _ in range(3):  # each lost race means another request changed the record
                try:
                    await self._collection.insert_one(doc)
                    return Claim(ClaimState.CLAIMED, token=token)
                except DuplicateKeyError:
                    pass
                current = await self._collection.find_one({"_id": record})
                if current is None:
                    continue
                in_flight = current["response"] is None
                live_until = current.get("lease_until") if in_flight else current["expires_at"]
                if live_until is not None and utc(live_until) > now:
                    return existing_claim(
                        fingerprint, current["fingerprint"], current["response"], current["token"]
                    )
                same_body = current["fingerprint"] == fingerprint
                stale = current["token"] if in_flight and same_body else None
                previous = planned_id(stale) if stale else ""
                # expired: take it over (keeping the id an in-flight owner may have stored
                # under, with a new owner), unless another request did meanwhile
                taken = new_token(previous)
                replaced = await self._collection.find_one_and_replace(
                    {"_id": record, "token": current["token"], "response": current["response"]},
                    {**doc, "token": taken},
                )
                if replaced is not None:
                    return Claim(ClaimState.CLAIMED, token=taken, previous=previous)
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
        with unavailable_on_driver_error(write=True):
            await self._collection.update_one(
                {"_id": record, "token": token}, {"$set": kept, "$unset": {"lease_until": ""}}
            )

    async def forget_customer(self, customer_id: str) -> None:
        """Delete the answers that hold this customer's data (it is being anonymized)."""
        await self._collection.delete_many({"customer_id": customer_id})

    async def release(self, record: str, token: str) -> None:
        with unavailable_on_driver_error(write=True):
            await self._collection.delete_one({"_id": record, "token": token})

    async def sweep(self, now: datetime) -> int:
        """In batches of `SWEEP_BATCH` (the TTL index deletes them too, once a minute)."""
        deleted = 0
        with unavailable_on_driver_error(write=True):
            while True:
                expired = self._collection.find({"expires_at": {"$lte": now}}, {"_id": 1})
                ids = [doc["_id"] async for doc in expired.limit(SWEEP_BATCH)]
                if ids:
                    result = await self._collection.delete_many({"_id": {"$in": ids}})
                    deleted += result.deleted_count
                if len(ids) < SWEEP_BATCH:
                    return deleted
