"""The store behind `Idempotency-Key` (Stripe semantics), one per adapter.

A record is keyed by a digest of (caller, key), so neither is stored and two callers'
keys never meet. `claim` is atomic in every adapter (a unique key decides, in one
transaction on SQLite, one insert on MongoDB), so of many concurrent requests with one
key exactly one runs; the others see it in flight or, once it completed, its response.
A claim expires after `IN_FLIGHT_LEASE`, so a process that died mid-request does not
block its key for a day; a completed response expires after `RESPONSE_TTL`.
A claim's token is `<customer id>:<owner>`: the id a POST under this claim stores its
customer with, and a secret of the request holding it. A claim left in flight (its owner
died, or the disk filled between the insert and `complete`) still names the customer, so
a retry answers with it instead of "nothing stored" then `already_exists`. An expired
in-flight claim is kept until `RESPONSE_TTL` after its lease for that reason, and taken
over with the same customer id and a new owner (the old one can no longer complete it).
Responses are stored sealed by the caller (they carry personal data); the store only
keeps text.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

from bson import ObjectId

RESPONSE_TTL = timedelta(hours=24)
# Live records per caller: a new key beyond this is refused (429) until some expire. At
# ~1.3 KB a record, 1.3 MB per caller at most, whatever the rate limit.
MAX_LIVE_KEYS = 1000
# Expired records deleted per transaction: a sweep never holds the write lock for long
# nor grows the WAL by more than one batch.
SWEEP_BATCH = 1000
CALLER_PREFIX_LENGTH = 16
# Longer than any request can run (every dependency has a timeout of a few seconds).
IN_FLIGHT_LEASE = timedelta(minutes=1)


class ClaimState(Enum):
    CLAIMED = "claimed"  # the caller runs the request, then completes or releases
    IN_FLIGHT = "in_flight"  # another request with this key runs now
    MISMATCH = "mismatch"  # the key was used with another request body
    COMPLETED = "completed"  # `response` is what the first request answered
    TOO_MANY = "too_many"  # the caller holds MAX_LIVE_KEYS live records already


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    # CLAIMED: proves ownership to complete/release, and is the id a POST stores under;
    # IN_FLIGHT: the running (or dead) owner's, so its customer can be looked up.
    token: str = ""
    response: str = ""  # COMPLETED: the sealed response
    # CLAIMED over an expired in-flight claim of the same body: the customer id it planned
    previous: str = ""

    @property
    def customer_id(self) -> str:
        """The id a POST under this claim stores its customer with."""
        return planned_id(self.token)


def new_token(customer_id: str = "") -> str:
    """`<customer id>:<owner>`: a fresh ObjectId unless taking over a claim's id."""
    return f"{customer_id or ObjectId()}:{secrets.token_hex(8)}"


def planned_id(token: str) -> str:
    return token.partition(":")[0]


def record_id(caller: str, key: str) -> str:
    """One record per caller and key: a digest of the caller (so a caller's records are one
    index range, counted for `MAX_LIVE_KEYS`), then of both (JSON array, unambiguous)."""
    prefix = hashlib.sha256(json.dumps([caller]).encode()).hexdigest()[:CALLER_PREFIX_LENGTH]
    return prefix + hashlib.sha256(json.dumps([caller, key]).encode()).hexdigest()


def caller_range(record: str) -> tuple[str, str]:
    """[low, high) of the ids of the records of `record`'s caller (hex sorts below "g")."""
    prefix = record[:CALLER_PREFIX_LENGTH]
    return prefix, prefix + "g"


def existing_claim(
    fingerprint: str, stored_fingerprint: str, response: str | None, token: str | None = None
) -> Claim:
    """What a live record means to a new request with `fingerprint`."""
    if stored_fingerprint != fingerprint:
        return Claim(ClaimState.MISMATCH)
    if response is None:
        return Claim(ClaimState.IN_FLIGHT, token=token or "")
    return Claim(ClaimState.COMPLETED, response=response)


class IdempotencyStore(Protocol):
    async def claim(self, record: str, fingerprint: str, now: datetime) -> Claim:
        """Take `record` for a new request (also when the previous one expired), or say
        why not."""

    async def complete(
        self,
        record: str,
        token: str,
        response: str,
        now: datetime,
        customer_id: str | None = None,
    ) -> None:
        """Keep `response` for `RESPONSE_TTL`; a no-op if the claim was lost meanwhile.
        `customer_id`: the customer whose data it holds (deleted when it is anonymized)."""

    async def release(self, record: str, token: str) -> None:
        """Forget the claim (the request failed in a way a retry should run again)."""

    async def sweep(self, now: datetime) -> int:
        """Delete expired records; how many. (Reads ignore expired records anyway.)"""
