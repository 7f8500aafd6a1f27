"""The customer, declared once: every field with its type and its spec on one line.

`Customer` and `Address` are the stored record (what every storage adapter takes and
returns, UTC-aware datetimes); `Spec` says how the rest of the service treats a field.
`FIELDS` (read from the annotations) is the one table everything else derives from: the
request and response schemas (`service.api.schemas`), the public view, the default
masking list, the import check (`service.storage.admin`) and the storage mappings
(`service.storage.sqlite`, `service.storage.mongo`).

Adding a field is one line here (ARCHITECTURE.md, "How to add a customer field"); a
record stored before the field existed reads with the field's `default`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypedDict, cast, get_args, get_origin, get_type_hints

from service.customers.canonical import ID_RE
from service.customers.lifecycle import (
    ACTIVE,
    ANONYMIZED,
    STATUSES,
    Transition,
    lifecycle_fields,
)

Request = Literal["required", "optional"]
Origin = Literal["caller", "cep", "system"]


@dataclass(frozen=True)
class Spec:
    """How one field is treated.

    - `request`: accepted in a POST body ("required" or "optional"; every request field is
      optional in a PATCH); None: never sent by a caller.
    - `origin`: who sets it: the caller, the CEP lookup (`cep`: a caller's value is kept
      only where the CEP's address has none), or the service (`system`).
    - `personal`: personal data (LGPD): never in logs, metrics, events or audit entries.
    - `index`: the storage field carrying its unique index (compared by its key).
    - `sealed`: stored encrypted (AES-GCM, with a blind index for lookups).
    - `masked`: hidden by the default policy (`policies/`, `masked_fields`).
    - `default`: what a record stored before the field existed reads as.
    """

    request: Request | None = None
    origin: Origin = "system"
    response: bool = True
    personal: bool = False
    index: str | None = None
    sealed: bool = False
    masked: bool = False
    max_length: int | None = None
    default: Any = None
    doc: Mapping[str, Any] = field(default_factory=dict)


def _pattern(pattern: str, example: str, description: str) -> dict[str, str]:
    return {"pattern": pattern, "example": example, "description": description}


# The forms the validators accept, as JSON Schema patterns (ECMA-262: `[0-9]`, never `\d`).
# They document the request fields; the validators stay the ones that decide (and answer 422
# with every failing field at once), so a disabled validator really stops checking.
CPF_PATTERN = r"^(?:[0-9]{11}|[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2})$"
CEP_PATTERN = r"^[0-9]{2}\.?[0-9]{3}-?[0-9]{3}$"
PHONE_PATTERN = r"^[0-9+() .-]{8,40}$"
ID_PATTERN = f"^{ID_RE.pattern}$"

_CALLER: Origin = "caller"
_REQUIRED: Request = "required"
_OPTIONAL: Request = "optional"


class Address(TypedDict):
    """Where the customer lives: the CEP, what it resolved to, and what the caller added."""

    cep: Annotated[
        str | None,
        Spec(
            _REQUIRED,
            _CALLER,
            personal=True,
            max_length=20,
            doc=_pattern(CEP_PATTERN, "01001-000", "8 digits, 00000-000 or 00.000-000"),
        ),
    ]
    street: Annotated[
        str | None,
        Spec(
            _OPTIONAL,
            "cep",
            personal=True,
            max_length=200,
            doc={"example": "Praça da Sé", "description": "Only where the CEP names none"},
        ),
    ]
    neighborhood: Annotated[
        str | None,
        Spec(
            _OPTIONAL,
            "cep",
            personal=True,
            max_length=100,
            doc={"example": "Sé", "description": "Only where the CEP names none"},
        ),
    ]
    city: Annotated[str | None, Spec(origin="cep")]
    state: Annotated[str | None, Spec(origin="cep")]
    number: Annotated[
        str | None, Spec(_OPTIONAL, _CALLER, personal=True, max_length=20, doc={"example": "100"})
    ]
    complement: Annotated[
        str | None,
        Spec(_OPTIONAL, _CALLER, personal=True, max_length=100, doc={"example": "apto 12"}),
    ]
    source: Annotated[str | None, Spec(origin="cep", doc={"description": "CEP provider"})]
    resolved_at: Annotated[
        datetime | None, Spec(origin="cep", doc={"description": "When the CEP was looked up"})
    ]


class Customer(TypedDict):
    """A stored customer (DESIGN.md "Customer (response)")."""

    id: Annotated[str, Spec(doc={"description": "Opaque identifier", "pattern": ID_PATTERN})]
    name: Annotated[
        str,
        Spec(_REQUIRED, _CALLER, personal=True, max_length=200, doc={"example": "Maria da Silva"}),
    ]
    email: Annotated[
        str,
        Spec(
            _REQUIRED,
            _CALLER,
            personal=True,
            index="email_key",
            max_length=320,
            doc={"format": "email", "example": "maria@example.com"},
        ),
    ]
    phone: Annotated[
        str,
        Spec(
            _REQUIRED,
            _CALLER,
            personal=True,
            masked=True,
            max_length=40,
            doc=_pattern(PHONE_PATTERN, "(11) 91234-5678", "A Brazilian mobile or landline"),
        ),
    ]
    cpf: Annotated[
        str,
        Spec(
            _REQUIRED,
            _CALLER,
            personal=True,
            index="cpf_index",
            sealed=True,
            masked=True,
            max_length=20,
            doc=_pattern(CPF_PATTERN, "529.982.247-25", "11 digits, bare or 000.000.000-00"),
        ),
    ]
    address: Address
    created_at: datetime
    updated_at: datetime
    # The lifecycle (service/customers/lifecycle.py), set by the service only.
    status: Annotated[
        str,
        Spec(
            default=ACTIVE,
            doc={
                "enum": list(STATUSES),
                "description": "active; blocked (processing suspended, no change until "
                "unblocked); closed (relationship ended, kept until `purge_after`); anonymized "
                "(personal data erased). Without `customers:restricted` a caller sees only "
                "active customers.",
            },
        ),
    ]
    closed_at: Annotated[
        datetime | None,
        Spec(doc={"description": "When the relationship ended (closed, anonymized)"}),
    ]
    purge_after: Annotated[
        datetime | None,
        Spec(doc={"description": "When a closed customer is anonymized (closed_at + retention)"}),
    ]
    anonymized_at: Annotated[datetime | None, Spec()]
    # a DPO's note, shown only to callers who see blocked customers; gone once unblocked
    blocked_reason: Annotated[
        str | None, Spec(doc={"description": "Why it is blocked (blocked only)"})
    ]


@dataclass(frozen=True)
class Field:
    """One row of the field table: a field of `Customer` or (`in_address`) of `Address`."""

    name: str
    type: type
    nullable: bool
    in_address: bool
    spec: Spec


def _table(record: type, in_address: bool) -> tuple[Field, ...]:
    rows = []
    for name, hint in get_type_hints(record, include_extras=True).items():
        spec = Spec()
        if get_origin(hint) is Annotated:
            hint, spec = get_args(hint)[0], get_args(hint)[1]
        types = [t for t in get_args(hint) if t is not type(None)] or [hint]
        rows.append(Field(name, types[0], len(types) < len(get_args(hint)), in_address, spec))
    return tuple(rows)


# The field table: the customer's (`address` among them, holding `ADDRESS_FIELDS`) and its
# address's. `FIELDS` is every leaf field, top-level first.
CUSTOMER_FIELDS = _table(Customer, False)
ADDRESS_FIELDS = _table(Address, True)
FIELDS = tuple(f for f in CUSTOMER_FIELDS if f.name != "address") + ADDRESS_FIELDS
REQUEST_FIELDS = tuple(f for f in FIELDS if f.spec.request)
CEP_FIELDS = tuple(f.name for f in ADDRESS_FIELDS if f.spec.origin == "cep")
# what a caller may send where the CEP's address has none
CALLER_OVERRIDES = tuple(
    f.name for f in ADDRESS_FIELDS if f.spec.origin == "cep" and f.spec.request
)
DATETIME_FIELDS = tuple(f for f in FIELDS if f.type is datetime)
# field of the domain -> the storage field that carries its unique index
INDEXED = {f.name: f.spec.index for f in FIELDS if f.spec.index}
UNIQUE_FIELDS = tuple(INDEXED)
PERSONAL_FIELDS = frozenset(f.name for f in FIELDS if f.spec.personal)
DEFAULT_MASKED = frozenset(f.name for f in FIELDS if f.spec.masked)
# what an import line must hold (a field with no default cannot be made up)
REQUIRED_KEYS = frozenset(
    {"address"}
    | {
        f.name
        for f in CUSTOMER_FIELDS
        if not f.nullable and not f.spec.sealed and f.spec.default is None
    }
)

# Values to store: a new customer's fields (no id, no timestamps) or changes to one (an
# `address` dict holding only the address fields that change).
Draft = dict[str, Any]


def changes_from(values: Mapping[str, Any]) -> Draft:
    """Validated values as changes to a stored customer.

    A new CEP replaces the whole enrichment: what the `cep` validator found (`address`,
    which already holds a caller's street where the CEP names none), or, when that
    validator is disabled, only what the caller sent, never the previous CEP's street.
    """
    changes = {
        f.name: values[f.name] for f in CUSTOMER_FIELDS if f.spec.request and f.name in values
    }
    address = {
        f.name: values[f.name] for f in ADDRESS_FIELDS if f.spec.request and f.name in values
    }
    if "cep" in values:
        address = dict.fromkeys(CEP_FIELDS) | address | (values.get("address") or {})
    if address:
        changes["address"] = address
    return changes


def new_customer(values: Mapping[str, Any]) -> Draft:
    """Validated values of a registration as the customer to store (no id, no timestamps)."""
    customer = changes_from(values)
    customer["address"] = {f.name: f.spec.default for f in ADDRESS_FIELDS} | customer.get(
        "address", {}
    )
    return customer


def complete(record: Mapping[str, Any]) -> Customer:
    """A record as read from storage or an import line, every field present: a field the
    record predates reads as its `default` (its address too)."""
    address = record.get("address") or {}
    full: dict[str, Any] = {f.name: record.get(f.name, f.spec.default) for f in CUSTOMER_FIELDS}
    full["address"] = {f.name: address.get(f.name, f.spec.default) for f in ADDRESS_FIELDS}
    return cast(Customer, full)


def transitioned(
    transition: Transition,
    current: Customer,
    at: datetime,
    *,
    closed_days: int,
    reason: str | None = None,
) -> Customer:
    """`current` after a lifecycle `transition` at `at` (checked first: raises the lifecycle
    errors). An anonymization erases every personal field of the table (set to None): name,
    email, phone, CPF, CEP, street, neighborhood, number, complement; what is not personal
    (id, status, timestamps, city, state, the CEP provider) stays."""
    transition.check(current["status"])
    fields = lifecycle_fields(transition, current, at, closed_days=closed_days, reason=reason)
    after = cast(Customer, {**current, **fields, "updated_at": at})
    return erased(after) if transition.target == ANONYMIZED else after


def erased(customer: Customer) -> Customer:
    """`customer` with every personal field of the table set to None (the address's too)."""
    kept: dict[str, Any] = {
        **customer,
        **{f.name: None for f in CUSTOMER_FIELDS if f.spec.personal},
    }
    address = customer["address"]
    kept["address"] = {**address, **{f.name: None for f in ADDRESS_FIELDS if f.spec.personal}}
    return cast(Customer, kept)


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of the fields whose value differs (the address as one, as audit entries
    name it): what the audit entry of a lifecycle transition lists, never a value."""
    return tuple(
        sorted(
            f.name
            for f in CUSTOMER_FIELDS
            if f.name != "updated_at" and before.get(f.name) != after.get(f.name)
        )
    )


def to_json(customer: Mapping[str, Any]) -> dict[str, Any]:
    """A record with its datetimes as ISO 8601 text (`from_json` reads it back)."""
    return _convert(customer, datetime.isoformat)


def from_json(record: Mapping[str, Any]) -> Customer:
    """Inverse of `to_json`, every field present (`complete`), in one pass: a point read
    pays for it on every GET. Raises ValueError (TypeError) on a datetime that is not ISO
    8601."""
    full = cast(dict[str, Any], complete(record))
    for f in DATETIME_FIELDS:
        holder = full["address"] if f.in_address else full
        value = holder[f.name]
        if value is not None:
            holder[f.name] = datetime.fromisoformat(value)
    return cast(Customer, full)


def now() -> datetime:
    """UTC, truncated to milliseconds (MongoDB's precision), so every adapter returns what
    it stored."""
    current = datetime.now(UTC)
    return current.replace(microsecond=current.microsecond // 1000 * 1000)


def utc(moment: datetime) -> datetime:
    """Naive datetimes from a driver (mongomock) are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def with_utc(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record whose datetimes are UTC-aware."""
    return _convert(record, utc, only=datetime)


def _convert(record: Mapping[str, Any], function: Any, only: type | None = None) -> dict[str, Any]:
    converted = dict(record)
    address = converted.get("address")
    address = converted["address"] = dict(address) if isinstance(address, Mapping) else {}
    for f in DATETIME_FIELDS:
        holder = address if f.in_address else converted
        value = holder.get(f.name)
        if value is not None and (only is None or isinstance(value, only)):
            holder[f.name] = function(value)
    if not address and "address" not in record:
        del converted["address"]
    return converted
