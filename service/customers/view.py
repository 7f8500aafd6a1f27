"""A stored customer as a response shows it (before the policy's masking)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from service.customers.model import ADDRESS_FIELDS, CUSTOMER_FIELDS


def _timestamp(value: datetime | None) -> str | None:
    """`2026-01-01T12:00:00Z` (isoformat, a fifth of strftime's cost: a page has 40 of them)."""
    if value is None:
        return None
    if value.tzinfo is UTC:  # what storage returns: no conversion to pay for
        return value.isoformat(timespec="seconds")[:19] + "Z"
    return value.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat() + "Z"


# (name, default) of each field a response shows, in the response's order; then the
# datetimes among them, turned to text in place (one comprehension: a page renders 20)
_VIEW_TOP = tuple((f.name, f.spec.default) for f in CUSTOMER_FIELDS if f.spec.response)
_VIEW_ADDRESS = tuple((f.name, f.spec.default) for f in ADDRESS_FIELDS if f.spec.response)
_VIEW_TOP_TIMES = tuple(f.name for f in CUSTOMER_FIELDS if f.spec.response and f.type is datetime)
_VIEW_ADDRESS_TIMES = tuple(
    f.name for f in ADDRESS_FIELDS if f.spec.response and f.type is datetime
)


def public_view(customer: Mapping[str, Any]) -> dict[str, Any]:
    """A stored customer in the response shape of DESIGN.md (a field the record predates
    shows its default)."""
    stored_address = customer.get("address") or {}
    view = {name: customer.get(name, default) for name, default in _VIEW_TOP}
    address = {name: stored_address.get(name, default) for name, default in _VIEW_ADDRESS}
    for name in _VIEW_TOP_TIMES:
        view[name] = _timestamp(view[name])
    for name in _VIEW_ADDRESS_TIMES:
        address[name] = _timestamp(address[name])
    view["address"] = address
    return view
