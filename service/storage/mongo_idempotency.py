"""Idempotency-Key records of the MongoDB adapter, in their own collection."""

from __future__ import annotations

import secrets
from datetime import datetime

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from service.customers.model import utc
from service.storage.idempotency import (
    IN_FLIGHT_LEASE,
    RESPONSE_TTL,
    Claim,
    ClaimState,
    existing_claim,
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
        token = secrets.token_hex(16)
        doc = {
            "_id": record,
            "fingerprint": fingerprint,
            "token": token,
            "response": None,
            "expires_at": now + IN_FLIGHT_LEASE,
        }
        with unavailable_on_driver_error():
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
        with unavailable_on_driver_error():
            await self._collection.update_one({"_id": record, "token": token}, {"$set": kept})

    async def forget_customer(self, customer_id: str) -> None:
        """Delete the answers that hold this customer's data (it is being anonymized)."""
        await self._collection.delete_many({"customer_id": customer_id})

    async def release(self, record: str, token: str) -> None:
        with unavailable_on_driver_error():
            await self._collection.delete_one({"_id": record, "token": token})

    async def sweep(self, now: datetime) -> int:
        with unavailable_on_driver_error():
            result = await self._collection.delete_many({"expires_at": {"$lte": now}})
        return result.deleted_count
