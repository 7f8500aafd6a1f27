"""The customer record: what is stored, what changes, and the public view.

A customer is a plain dict with the keys of DESIGN.md: `id`, `name`, `email`, `phone`,
`cpf`, `address` (a dict of `ADDRESS_FIELDS`), `created_at`, `updated_at` (UTC-aware
datetimes). Storage adapters take and return exactly this; the HTTP edge renders it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from service.cep.base import ENRICHED_FIELDS
from service.customers.lifecycle import DATETIME_FIELDS

Customer = dict[str, Any]
TOP_FIELDS = ("name", "email", "phone", "cpf")
ADDRESS_FIELDS = (
    "cep",
    "street",
    "neighborhood",
    "city",
    "state",
    "number",
    "complement",
    "source",
)


def changes_from(values: Mapping[str, Any]) -> Customer:
    """Validated values as changes to a stored customer: top-level fields, and an `address`
    dict holding only the address fields that change.

    A new CEP replaces the whole enrichment: what the `cep` validator found, or nothing
    (when that validator is disabled) rather than the previous CEP's street.
    """
    changes = {name: values[name] for name in TOP_FIELDS if name in values}
    address = {name: values[name] for name in ("number", "complement") if name in values}
    if "cep" in values:
        found = values.get("address") or {}
        address.update(
            {"cep": values["cep"], **{name: found.get(name) for name in ENRICHED_FIELDS}}
        )
    if address:
        changes["address"] = address
    return changes


def new_customer(values: Mapping[str, Any]) -> Customer:
    """Validated values of a registration as the customer to store (no id, no timestamps)."""
    customer = changes_from(values)
    customer["address"] = {name: None for name in ADDRESS_FIELDS} | customer.get("address", {})
    return customer


def _timestamp(value: datetime) -> str:
    """`2026-01-01T12:00:00Z` (isoformat, a fifth of strftime's cost: a page has 40 of them)."""
    return value.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def public_view(customer: Mapping[str, Any]) -> dict[str, Any]:
    """A stored customer in the response shape of DESIGN.md: lifecycle timestamps only
    where set, `blocked_reason` only while blocked."""
    address = customer.get("address") or {}
    view = {
        "id": customer["id"],
        **{name: customer[name] for name in TOP_FIELDS},
        "address": {name: address.get(name) for name in ADDRESS_FIELDS},
        "status": customer["status"],
        "created_at": _timestamp(customer["created_at"]),
        "updated_at": _timestamp(customer["updated_at"]),
    }
    for name in DATETIME_FIELDS:
        if customer.get(name) is not None:
            view[name] = _timestamp(customer[name])
    if customer.get("blocked_reason") is not None:
        view["blocked_reason"] = customer["blocked_reason"]
    return view
