"""The store behind `Idempotency-Key` (Stripe semantics), one per adapter.

A record is keyed by a digest of (caller, key), so neither is stored and two callers'
keys never meet. `claim` is atomic in every adapter (a unique key decides, in one
transaction on SQLite, one insert on MongoDB), so of many concurrent requests with one
key exactly one runs; the others see it in flight or, once it completed, its response.
A claim expires after `IN_FLIGHT_LEASE`, so a process that died mid-request does not
block its key for a day; a completed response expires after `RESPONSE_TTL`.
Responses are stored sealed by the caller (they carry personal data); the store only
keeps text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

RESPONSE_TTL = timedelta(hours=24)
# Longer than any request can run (every dependency has a timeout of a few seconds).
IN_FLIGHT_LEASE = timedelta(minutes=1)


class ClaimState(Enum):
    CLAIMED = "claimed"  # the caller runs the request, then completes or releases
    IN_FLIGHT = "in_flight"  # another request with this key runs now
    MISMATCH = "mismatch"  # the key was used with another request body
    COMPLETED = "completed"  # `response` is what the first request answered


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    token: str = ""  # CLAIMED: proves ownership to complete/release
    response: str = ""  # COMPLETED: the sealed response


def record_id(caller: str, key: str) -> str:
    """One record per caller and key: a digest of both, unambiguous (JSON array)."""
    return hashlib.sha256(json.dumps([caller, key]).encode()).hexdigest()


def existing_claim(fingerprint: str, stored_fingerprint: str, response: str | None) -> Claim:
    """What a live record means to a new request with `fingerprint`."""
    if stored_fingerprint != fingerprint:
        return Claim(ClaimState.MISMATCH)
    if response is None:
        return Claim(ClaimState.IN_FLIGHT)
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
