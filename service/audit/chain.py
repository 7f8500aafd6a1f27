"""An audit entry, its canonical serialization and the hash chain (docs/audit.md).

The canonical form of an entry is RFC 8785 (JSON Canonicalization Scheme) of every member
but `hash`: keys sorted, no whitespace, UTF-8, non-ASCII characters as they are. Every
member is a string, a list of strings or null, so in Python that is
`json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.
`hash` = lower-case hex SHA-256 of that text (which includes `prev_hash`); the first
entry's `prev_hash` is 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

GENESIS = "0" * 64
# the personal fields an entry may name (never their values)
PERSONAL_FIELDS = ("name", "email", "phone", "cpf", "address")
# the members of an entry, in the order the API shows them
MEMBERS = ("id", "at", "actor", "action", "customer_id", "fields", "request_id")
ACTIONS = (
    "create",
    "update",
    "close",
    "block",
    "unblock",
    "reopen",
    "anonymize",
    "export",
    "read",
)
Entry = dict[str, Any]


def timestamp(moment: datetime) -> str:
    """`2026-01-01T12:00:00.123Z`: milliseconds, UTC; stored as this text, so the hash is
    recomputed from exactly what was hashed (and text order is time order)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def new_entry(
    *,
    action: str,
    actor: str,
    customer_id: str,
    fields: tuple[str, ...] | list[str],
    request_id: str | None,
    at: datetime,
) -> Entry:
    """An entry not yet in the chain (no `prev_hash`, no `hash`); `fields` sorted."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    return {
        "id": str(ObjectId()),
        "at": timestamp(at),
        "actor": actor,
        "action": action,
        "customer_id": customer_id,
        "fields": sorted(set(fields)),
        "request_id": request_id,
    }


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The bytes the hash covers: the entry's members and `prev_hash`, JCS form."""
    members = {name: entry[name] for name in (*MEMBERS, "prev_hash")}
    return json.dumps(members, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chained(entry: Mapping[str, Any], prev_hash: str) -> Entry:
    """The entry as the next link after the one whose hash is `prev_hash`."""
    linked = {**entry, "prev_hash": prev_hash}
    linked["hash"] = hashlib.sha256(canonical(linked)).hexdigest()
    return linked


def broken_link(entry: Mapping[str, Any], prev_hash: str) -> str | None:
    """Why `entry` is not the valid successor of `prev_hash`, or None when it is."""
    if entry["prev_hash"] != prev_hash:
        return "its prev_hash is not the hash of the entry before it"
    if hashlib.sha256(canonical(entry)).hexdigest() != entry["hash"]:
        return "its hash does not match its content"
    return None
