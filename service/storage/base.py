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
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bson import ObjectId

from service.customers.canonical import email_key
from service.customers.errors import InvalidCursor
from service.customers.lifecycle import Transition
from service.customers.model import Customer, Draft
from service.errors import ServiceUnavailable
from service.storage.idempotency import IdempotencyStore
from service.storage.pii import PiiCodec

_ID = re.compile(r"[0-9a-f]{24}")


class DatabaseUnavailable(ServiceUnavailable):
    default_detail = "The database is not reachable; nothing was stored."


@dataclass(frozen=True)
class Page:
    items: list[Customer]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


class CustomerRepository(Protocol):
    async def ensure_schema(self) -> None:
        """Create or migrate what the adapter needs (tables, indexes); idempotent."""

    async def ping(self) -> None:
        """Return when the database answers; raise DatabaseUnavailable otherwise."""

    async def close(self) -> None: ...

    async def insert(self, customer: Draft) -> Customer:
        """Store a new customer (no id, no timestamps); raises DuplicateCustomer."""

    async def get(self, customer_id: str) -> Customer | None: ...

    async def update(self, customer_id: str, changes: Draft) -> Customer | None:
        """Apply `changes` (an `address` dict changes only the keys it holds); None when the
        id is unknown; raises DuplicateCustomer, and the lifecycle errors unless the customer
        is active (read and written in one atomic step)."""

    async def delete(self, customer_id: str) -> bool: ...

    async def page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        filters: Mapping[str, str] | None = None,
        statuses: Collection[str] | None = None,
    ) -> Page:
        """Customers in creation order (= id order), `limit` at a time; `filters` are exact
        matches on `email` and/or `cpf`; `statuses` (None: all) the statuses to include,
        each served by an index on (status, id). Raises InvalidCursor."""

    async def transition(
        self,
        customer_id: str,
        transition: Transition,
        *,
        closed_days: int,
        reason: str | None = None,
    ) -> Customer | None:
        """Apply a lifecycle transition (`service.customers.model.transitioned`) atomically:
        the status it checks is the status it changes, so of two concurrent transitions one
        wins and the other sees its result. An anonymization erases the personal fields and
        deletes the customer's Idempotency-Key answers. None when the id is unknown."""

    async def purge(self, due: datetime, limit: int) -> int:
        """Anonymize up to `limit` closed customers whose `purge_after` is at or before `due`,
        each atomically (a batch is one transaction where the engine has them); how many."""

    async def exists(self, field: str, value: str, *, exclude_id: str | None = None) -> bool:
        """Whether another customer has this `email` (compared by its key) or `cpf`."""

    async def restore(self, customers: Sequence[Customer]) -> int:
        """Store complete customers (id and timestamps kept) whose id is not stored yet;
        the number stored. Re-running with the same customers stores nothing."""

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


def new_id() -> str:
    """A fresh id: an ObjectId's 24 hex digits, so ids sort in creation order everywhere."""
    return str(ObjectId())


def parse_id(customer_id: str) -> str | None:
    """The canonical (lower-case) form of an id, or None for one no customer can have."""
    canonical = customer_id.lower()
    return canonical if _ID.fullmatch(canonical) else None


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(last_id)).decode().rstrip("=")


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
