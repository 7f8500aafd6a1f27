"""The event: thin (ids, type, changed field names, when), never a personal value.

A consumer learns *that* a customer changed and *which* fields; it reads the values through
the API, where the policy applies. `position` is the event's place in the database's one
commit order (the feed's cursor names it); it is not part of the public body.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from bson import ObjectId

from service.customers.errors import CustomerError, InvalidCursor
from service.customers.model import ADDRESS_FIELDS, CUSTOMER_FIELDS
from service.errors import FieldError
from service.events.types import EVENT_TYPES

# Field names an event may carry: the customer's fields, never their values. A name outside
# this set (a typo, a value passed by mistake) is refused when the event is built.
FIELD_NAMES = frozenset(f.name for f in (*CUSTOMER_FIELDS, *ADDRESS_FIELDS)) | {"status"}
_EVENT_ID = re.compile(r"evt_[0-9a-f]{24}")


class InvalidEventCursor(InvalidCursor):
    """An `after` the feed did not hand out (422 on `after`)."""

    def field_error(self) -> FieldError:
        return FieldError("after", "invalid", "The `after` cursor is not one this API handed out.")


class CursorExpired(CustomerError):
    """The cursor points before events the retention sweep has already deleted."""


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    customer_id: str
    fields: tuple[str, ...]
    occurred_at: datetime

    def body(self) -> dict[str, Any]:
        """The public JSON shape (feed item and webhook body alike)."""
        return {
            "id": self.id,
            "type": self.type,
            "customer_id": self.customer_id,
            "fields": list(self.fields),
            "occurred_at": timestamp(self.occurred_at),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.body())

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Event:
        return cls(
            id=body["id"],
            type=body["type"],
            customer_id=body["customer_id"],
            fields=tuple(body["fields"]),
            occurred_at=datetime.fromisoformat(body["occurred_at"].replace("Z", "+00:00")),
        )


def new_event_id() -> str:
    """Unique across processes and machines (an ObjectId: time, random, counter)."""
    return f"evt_{ObjectId()}"


def is_event_id(value: str) -> bool:
    return _EVENT_ID.fullmatch(value) is not None


def new_event(
    event_type: str, customer_id: str, fields: Iterable[str], occurred_at: datetime
) -> Event:
    """The event of one change; refuses an unknown type or anything but known field names."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    names = tuple(sorted(set(fields)))
    unknown = [name for name in names if name not in FIELD_NAMES]
    if unknown:
        raise ValueError("an event names customer fields only; something else was refused")
    return Event(new_event_id(), event_type, customer_id, names, occurred_at.astimezone(UTC))


def timestamp(moment: datetime) -> str:
    """`2026-01-01T12:00:00.123Z`: milliseconds, so events of one second keep their order
    for a reader of the timestamps too."""
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


def encode_cursor(position: int) -> str:
    """An opaque cursor naming a position of the feed (after which the next page starts)."""
    return base64.urlsafe_b64encode(b"e" + position.to_bytes(8, "big")).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position a cursor names; InvalidEventCursor for anything the feed did not hand out."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEventCursor(cursor) from None
    if len(raw) != 9 or raw[:1] != b"e":
        raise InvalidEventCursor(cursor)
    return int.from_bytes(raw[1:], "big")
