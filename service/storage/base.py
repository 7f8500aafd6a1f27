"""The repository contract every storage adapter implements, and what adapters share.

Domain values in, domain values out: customers are the `Customer` records of
`service.customers.model`, every field present (ids as 24 lower-case hex characters,
UTC-aware datetimes), errors are the domain errors
of `service.customers.errors` or `DatabaseUnavailable`. No driver type crosses it.
The CPF crosses it in clear; adapters store it sealed by the one `PiiCodec` (ciphertext, key
id, blind index) and compare its blind index, never the CPF itself.
Uniqueness of the email key and the CPF is the database's job (unique indexes), never a
read-before-write: `exists` is only a friendly pre-check.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from bson import ObjectId

from service.audit.chain import Entry
from service.customers.canonical import email_key
from service.customers.errors import InvalidCursor
from service.customers.lifecycle import Transition
from service.customers.model import Customer, Draft
from service.customers.model import now as now  # what `Change.at` defaults to
from service.errors import ServiceUnavailable
from service.events.store import EventStore
from service.storage.idempotency import IdempotencyStore
from service.storage.pii import PiiCodec

log = logging.getLogger(__name__)
Item = TypeVar("Item")


class DatabaseUnavailable(ServiceUnavailable):
    default_detail = "The database is not reachable; nothing was stored."
    cause: str | None = None  # the driver's words, for the log (never the client)


def unavailable(exc: BaseException) -> DatabaseUnavailable:
    """The 503 for a driver error, carrying its cause (type and message) for the log."""
    causes: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(causes) < 4:  # the chain: BatchAborted <- SQLITE_FULL
        causes.append(
            seen.cause
            if isinstance(seen, DatabaseUnavailable) and seen.cause
            else f"{type(seen).__name__}: {seen}"
        )
        seen = seen.__cause__ or seen.__context__
    error = DatabaseUnavailable()
    error.cause = " <- ".join(causes)[:500]
    return error


class WritesFailing(Exception):
    """Readiness: the last writes failed (disk full, read-only file...)."""


class StorageHealth:
    """What storage outages look like from inside: every failure is logged with its cause
    (the first of a run at ERROR, then at most one WARNING per `LOG_EVERY_S` with a count),
    and while writes fail, readiness says so."""

    LOG_EVERY_S = 10.0

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._name, self._clock = name, clock
        self.write_failure: str | None = None  # the cause, while writes fail
        self._failed_since_log = 0
        self._last_log = -math.inf

    def failed(self, error: DatabaseUnavailable, *, write: bool) -> None:
        cause = error.cause or "unknown cause"
        first = write and self.write_failure is None
        if write:
            self.write_failure = cause
        self._failed_since_log += 1
        if first or self._clock() - self._last_log >= self.LOG_EVERY_S:
            log.log(
                logging.ERROR if first else logging.WARNING,
                "%s %s failed (%d since the last such line): %s",
                self._name,
                "write" if write else "read",
                self._failed_since_log,
                cause,
            )
            self._failed_since_log, self._last_log = 0, self._clock()

    def write_ok(self) -> None:
        if self.write_failure is not None:
            log.warning("%s writes succeed again", self._name)
            self.write_failure = None

    async def check_writes(self) -> None:
        if self.write_failure is not None:
            raise WritesFailing(self.write_failure)


# the event each change action announces (DESIGN.md, Events); `export` and reads announce none
EVENT_TYPES = {
    "create": "customer.created",
    "update": "customer.updated",
    "close": "customer.closed",
    "block": "customer.blocked",
    "unblock": "customer.unblocked",
    "reopen": "customer.reopened",
    "anonymize": "customer.anonymized",
}


@dataclass(frozen=True)
class Change:
    """What a write records besides itself, in the same transaction: one audit entry and,
    when `event_type` is set, one event (`service.storage.journal.journal_rows`)."""

    action: str  # create update close block unblock reopen anonymize export
    actor: str  # token sub; "system:retention" for the sweep, "operator" for CLI
    request_id: str | None
    fields: tuple[str, ...]  # field NAMES only, never values
    at: datetime = field(default_factory=now)
    event_type: str | None = None

    @classmethod
    def of(
        cls,
        action: str,
        actor: str,
        *,
        request_id: str | None = None,
        fields: Sequence[str] = (),
    ) -> Change:
        """A change happening now, announcing the event of its action (if any)."""
        names = tuple(sorted(set(fields)))
        return cls(action, actor, request_id, names, now(), EVENT_TYPES.get(action))


@dataclass(frozen=True)
class Page(Generic[Item]):
    """A page of customers or of audit entries, and where the next one starts."""

    items: list[Item]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


class AuditStore(Protocol):
    """The adapter's audit trail: appended to by every write (the journal) and by `append`;
    never updated or deleted through the code. Pages are newest first."""

    async def append(self, entries: Sequence[Entry]) -> None:
        """Link entries (reads, exports: no customer write) to the chain, in order."""

    async def page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        customer_id: str | None = None,
        actor: str | None = None,
    ) -> Page[Entry]:
        """Entries of one customer or one actor, newest first. Raises InvalidCursor."""

    def chain(self) -> AsyncIterator[Entry]:
        """Every entry, oldest first (for `db audit verify`)."""

    async def drain(self) -> int:
        """Move journals still pending to the trail (MongoDB's outboxes; SQLite has none:
        its entries are written in the change's transaction); how many documents had one."""


class CustomerRepository(Protocol):
    health: StorageHealth  # failures logged with their cause; readiness while writes fail

    async def ensure_schema(self) -> None:
        """Create or migrate what the adapter needs (tables, indexes); idempotent."""

    async def ping(self) -> None:
        """Return when the database answers; raise DatabaseUnavailable otherwise."""

    async def close(self) -> None: ...

    async def insert(self, customer: Draft, change: Change) -> Customer:
        """Store a new customer (no timestamps; an id only when an Idempotency-Key claim
        chose it) and, atomically with it, what `change` records; raises DuplicateCustomer."""

    async def get(self, customer_id: str) -> Customer | None: ...

    async def update(self, customer_id: str, changes: Draft, change: Change) -> Customer | None:
        """Apply `changes` (an `address` dict changes only the keys it holds) and record
        `change`, atomically; None (nothing recorded) when the id is unknown; raises
        DuplicateCustomer, and the lifecycle errors unless the customer is active (read and
        written in one atomic step)."""

    async def delete(self, customer_id: str, change: Change) -> bool:
        """Remove the customer and record `change`, atomically; False when unknown."""

    async def page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        filters: Mapping[str, str] | None = None,
        statuses: Collection[str] | None = None,
    ) -> Page[Customer]:
        """Customers in creation order (= id order), `limit` at a time; `filters` are exact
        matches on `email` and/or `cpf`; `statuses` (None: all) the statuses to include,
        each served by an index on (status, id). Raises InvalidCursor."""

    async def transition(
        self,
        customer_id: str,
        transition: Transition,
        change: Change,
        *,
        closed_days: int,
        reason: str | None = None,
    ) -> Customer | None:
        """Apply a lifecycle transition (`service.customers.model.transitioned`) atomically:
        the status it checks is the status it changes, so of two concurrent transitions one
        wins and the other sees its result; recorded as `change` (its `fields`: the names
        of the fields the transition changed) in the same atomic write.
        An anonymization erases the personal fields and
        deletes the customer's Idempotency-Key answers. None when the id is unknown."""

    async def purge(self, due: datetime, limit: int, change: Change) -> int:
        """Anonymize up to `limit` closed customers whose `purge_after` is at or before `due`,
        each atomically with its journal (`change`, one entry per customer; a batch is one
        transaction where the engine has them); how many."""

    async def exists(self, field: str, value: str, *, exclude_id: str | None = None) -> bool:
        """Whether another customer has this `email` (compared by its key) or `cpf`."""

    async def restore(self, customers: Sequence[Customer], change: Change) -> int:
        """Store complete customers (id and timestamps kept) whose id is not stored yet,
        recording `change` for each one stored; the number stored. Re-running with the
        same customers stores (and records) nothing."""

    async def check(self) -> list[str]:
        """What is wrong with the database (integrity, missing indexes); empty when sound."""

    async def pii_key_ids(self) -> set[str]:
        """The ids of the keys stored CPFs are sealed with (an index lookup per id)."""

    async def reencrypt_pii(self, limit: int) -> int:
        """Re-seal up to `limit` CPFs whose key is not the active one with the active key,
        each only if its ciphertext is still the one read (compare-and-set); how many."""

    @property
    def idempotency(self) -> IdempotencyStore:
        """The adapter's Idempotency-Key records (a table/collection of their own)."""

    @property
    def audit(self) -> AuditStore:
        """The adapter's audit trail (a table/collection of its own)."""

    @property
    def events(self) -> EventStore:
        """The outbox the writes fill (the feed) and the webhook deliveries."""


def new_id() -> str:
    """A fresh id: an ObjectId's 24 hex digits, so ids sort in creation order everywhere."""
    return str(ObjectId())


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(last_id)).decode().rstrip("=")


def encode_position(seq: int) -> str:
    """A cursor for a position in the audit chain (8 bytes, as opaque as a customer's)."""
    return base64.urlsafe_b64encode(seq.to_bytes(8, "big")).decode().rstrip("=")


def decode_position(cursor: str) -> int:
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidCursor(cursor) from None
    if len(raw) != 8:
        raise InvalidCursor(cursor)
    return int.from_bytes(raw, "big")


def decode_cursor(cursor: str) -> str:
    """The id a cursor points after; InvalidCursor for anything this API did not hand out."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidCursor(cursor) from None
    if len(raw) != 12:
        raise InvalidCursor(cursor)
    return raw.hex()


def index_value(field: str, value: str, codec: PiiCodec) -> str:
    """What the unique index of `field` compares: the email's key, the CPF's blind index."""
    return email_key(value) if field == "email" else codec.blind_index(value)


def redact_url(url: str) -> str:
    """The URL without its user:password part, for messages and logs."""
    return re.sub(r"//[^/@]*@", "//", url, count=1)
