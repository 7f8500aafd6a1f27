"""An audit entry, its canonical serialization and the hash chain (docs/audit.md).

The canonical form of an entry is RFC 8785 (JSON Canonicalization Scheme) of every member
but `hash`: keys sorted, no whitespace, UTF-8, non-ASCII characters as they are. Every
member is a string, a list of strings or null, so in Python that is
`json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` (orjson
with OPT_SORT_KEYS writes the same bytes, faster; tests/audit check both agree).
`hash` = lower-case hex SHA-256 of that text (which includes `prev_hash`); the first
entry's `prev_hash` is 64 zeros.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from service.customers.model import ADDRESS_FIELDS, CUSTOMER_FIELDS

GENESIS = "0" * 64
# the personal fields an entry may name (never their values): the top-level ones of the
# field table, the address as one
PERSONAL_FIELDS = tuple(
    sorted(
        {f.name for f in CUSTOMER_FIELDS if f.spec.personal}
        | ({"address"} if any(f.spec.personal for f in ADDRESS_FIELDS) else set())
    )
)
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
# what the hash covers, in JCS order already (the sort then has nothing to move)
_HASHED = tuple(sorted((*MEMBERS, "prev_hash")))


def _fresh_process() -> None:
    """A random process part and counter start, again in each forked worker (else two
    workers would hand out the same ids)."""
    global _PROCESS, _COUNTER
    _PROCESS = os.urandom(5).hex()
    _COUNTER = itertools.count(int.from_bytes(os.urandom(3), "big"))


_PROCESS, _COUNTER = "", itertools.count()
_fresh_process()
os.register_at_fork(after_in_child=_fresh_process)


def _entry_id() -> str:
    """An ObjectId's layout (seconds, process, counter: 24 hex digits) at a fifth of
    bson's cost: ids rise, so the unique index on them appends."""
    return f"{int(time.time()):08x}{_PROCESS}{next(_COUNTER) & 0xFFFFFF:06x}"


def timestamp(moment: datetime) -> str:
    """`2026-01-01T12:00:00.123Z`: milliseconds, UTC; stored as this text, so the hash is
    recomputed from exactly what was hashed (and text order is time order)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


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
    return new_entry_at(
        action=action,
        actor=actor,
        customer_id=customer_id,
        fields=fields,
        request_id=request_id,
        at=timestamp(at),
    )


def new_entry_at(
    *,
    action: str,
    actor: str,
    customer_id: str,
    fields: tuple[str, ...] | list[str],
    request_id: str | None,
    at: str,
) -> Entry:
    """`new_entry` with `at` already in its text form (`timestamp`)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    return {
        "id": _entry_id(),
        "at": at,
        "actor": actor,
        "action": action,
        "customer_id": customer_id,
        "fields": sorted(set(fields)),
        "request_id": request_id,
    }


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The bytes the hash covers: the entry's members and `prev_hash`, JCS form."""
    return orjson.dumps({name: entry[name] for name in _HASHED}, option=orjson.OPT_SORT_KEYS)


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
