"""`db import`: every line through the same canonical forms and validators as the API.

A line is one customer as `db export` writes it. It is stored only when the API would
have accepted it: known keys of the right types, the request fields through the API's
request schema (NFC text, lengths, no control or bidi characters) and the configured
validator pipeline (email, phone, CPF check digits, uniqueness), the address fields
through the same text rules, an id whose time is not in the future, ISO 8601 timestamps
with an offset. The CEP's existence is checked against the offline directory when asked
(`--cep offline`), otherwise only its form; there is never a remote lookup. A refused line
is reported with its number and the names (never the values) of what is wrong; the others
are stored, each whole or not at all. Composes storage, validation and the API's request
schema, so it lives at the top of the package, beside the command line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from marshmallow import ValidationError

from service.api.schemas import CustomerCreateSchema
from service.audit.chain import PERSONAL_FIELDS
from service.cep.base import Address, CepProvider
from service.customers.canonical import TextError, normalize_text, parse_id
from service.customers.errors import DuplicateCustomer
from service.customers.lifecycle import ANONYMIZED, STATUSES
from service.customers.model import (
    ADDRESS_FIELDS,
    CEP_FIELDS,
    CUSTOMER_FIELDS,
    REQUIRED_KEYS,
    Customer,
    complete,
    erased,
    new_customer,
)
from service.errors import InvalidFields
from service.storage.base import Change, CustomerRepository
from service.storage.pii import PiiCodec, PiiKeyError
from service.validation.base import ValidationContext
from service.validation.pipeline import ValidatorPipeline

SEALED_CPF = "cpf_sealed"
EXPORT_PURPOSE = "cpf-export"
BATCH = 500
_STAMPS = ("created_at", "updated_at")
KNOWN_KEYS = frozenset({f.name for f in CUSTOMER_FIELDS} | {SEALED_CPF})
ADDRESS_KEYS = frozenset(f.name for f in ADDRESS_FIELDS)
# What a caller sends (the API's request schema checks them); the rest of the address is
# what the CEP gave at registration, checked as text.
_CALLER_TOP = tuple(f.name for f in CUSTOMER_FIELDS if f.spec.origin == "caller")
_CALLER_ADDRESS = tuple(f.name for f in ADDRESS_FIELDS if f.spec.origin == "caller")
_NULLABLE = frozenset(f.name for f in CUSTOMER_FIELDS if f.nullable)
_PERSONAL = frozenset(f.name for f in CUSTOMER_FIELDS if f.spec.personal)
# What the lifecycle sets (status, closed_at, purge_after, anonymized_at, blocked_reason)
_LIFECYCLE = tuple(
    f
    for f in CUSTOMER_FIELDS
    if f.spec.origin == "system" and f.name not in ("id", "address", *("created_at", "updated_at"))
)
_CEP_TEXT = tuple(f.name for f in ADDRESS_FIELDS if f.name in CEP_FIELDS and f.type is str)
# An ObjectId's first 4 bytes are its creation time: one far in the future sorts last
# forever and says the record was made when it was not.
_ID_CLOCK_SKEW = timedelta(days=1)
_ADDRESS_TEXT_MAX = 200


class Refused(Exception):
    """This line is not stored; the message names what is wrong, never a value."""


class _AlreadyThere(Exception):
    """A customer with this line's id is stored (or came earlier in the file)."""


@dataclass
class ImportSummary:
    read: int = 0
    stored: int = 0
    already: int = 0
    refusals: list[str] = field(default_factory=list)

    @property
    def refused(self) -> int:
        return len(self.refusals)


class _AnyAddress:
    """The CEP lookup of `--cep skip`: every well-formed CEP exists (no lookup at all)."""

    async def resolve(self, cep: str) -> Address | None:
        return Address(cep, "", "", "", "", "")


class _OfflineOnly:
    """The CEP lookup of `--cep offline`: the shipped directory, nothing remote."""

    def __init__(self, provider: CepProvider) -> None:
        self._provider = provider

    async def resolve(self, cep: str) -> Address | None:
        return await self._provider.lookup(cep)


async def import_lines(
    repository: CustomerRepository,
    lines: Iterable[str],
    codec: PiiCodec,
    pipeline: ValidatorPipeline,
    offline: CepProvider | None = None,
) -> ImportSummary:
    """Check every line, store the good ones in batches; `offline`: check CEPs there."""
    summary = ImportSummary()
    context = ValidationContext(
        customers=repository, cep=_AnyAddress() if offline is None else _OfflineOnly(offline)
    )
    batch: list[tuple[int, Customer]] = []
    ids_seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        summary.read += 1
        try:
            customer = await _checked(line, codec, pipeline, context, repository, ids_seen)
        except Refused as exc:
            summary.refusals.append(f"line {number}: {exc}")
            continue
        except _AlreadyThere:
            summary.already += 1
            continue
        ids_seen.add(customer["id"])
        batch.append((number, customer))
        if len(batch) == BATCH:
            await _store(repository, batch, summary)
            batch = []
    await _store(repository, batch, summary)
    return summary


async def _store(
    repository: CustomerRepository, batch: list[tuple[int, Customer]], summary: ImportSummary
) -> None:
    """One transaction for the batch; when a line clashes with another (two lines of the
    file with one email, say), line by line, so only the clashing line is refused."""
    if not batch:
        return
    change = Change.of("create", "operator", fields=PERSONAL_FIELDS)
    try:
        summary.stored += await repository.restore([c for _, c in batch], change)
        return
    except DuplicateCustomer:
        pass
    for number, customer in batch:
        try:
            await repository.restore([customer], change)
        except DuplicateCustomer as exc:
            summary.refusals.append(f"line {number}: already_exists ({', '.join(exc.fields)})")
        else:
            # 0 here means a batch without transactions (MongoDB) stored it before the clash
            summary.stored += 1


async def _checked(
    line: str,
    codec: PiiCodec,
    pipeline: ValidatorPipeline,
    context: ValidationContext,
    repository: CustomerRepository,
    ids_seen: set[str],
) -> Customer:
    try:
        data = json.loads(line)
    except ValueError:
        raise Refused("not JSON") from None
    if not isinstance(data, dict):
        raise Refused("not a JSON object")
    unknown = sorted(data.keys() - KNOWN_KEYS)
    if unknown:
        raise Refused(f"unknown keys: {', '.join(_name(k) for k in unknown[:10])}")
    missing = set(REQUIRED_KEYS - data.keys())
    if "cpf" not in data and SEALED_CPF not in data:
        missing.add("cpf")
    if missing:
        raise Refused(f"missing {', '.join(sorted(missing))}")
    # an anonymized customer's personal fields are null (checked below: all of them)
    nullable = _NULLABLE | (_PERSONAL if data.get("status") == ANONYMIZED else frozenset())
    wrong = [
        k
        for k in data
        if k != "address"
        and not isinstance(data[k], str)
        and not (data[k] is None and k in nullable)
    ]
    if not isinstance(data["address"], dict):
        wrong.append("address")
    if wrong:
        raise Refused(f"wrong types (text expected): {', '.join(sorted(wrong))}")
    customer_id = _checked_id(data["id"])
    lifecycle = _checked_lifecycle(data)
    if customer_id in ids_seen or await repository.get(customer_id) is not None:
        raise _AlreadyThere()  # before the validators: its own email is no clash
    stamps = _checked_stamps(data)
    if lifecycle["status"] == ANONYMIZED:  # nothing personal left to validate: none may be
        record = complete(
            {**data, **stamps, **lifecycle, "id": customer_id, "address": data["address"]}
        )
        if record != erased(record):
            raise Refused("an anonymized customer holds personal data")
        return record
    cpf = _cpf(data, codec)
    address = _checked_address(data["address"])
    request = {
        **{name: data[name] for name in _CALLER_TOP if name != "cpf"},
        "cpf": cpf,
        **{name: address[name] for name in _CALLER_ADDRESS if address[name] is not None},
    }
    try:
        loaded = CustomerCreateSchema().load(request)
    except ValidationError as exc:
        fields_ = exc.messages if isinstance(exc.messages, dict) else {}
        raise Refused(f"invalid: {', '.join(sorted(fields_)) or 'the fields'}") from None
    try:
        values = await pipeline.run(loaded, context)
    except InvalidFields as exc:
        reasons = sorted({f"{error.field} {error.code}" for error in exc.errors})
        raise Refused(f"invalid: {', '.join(reasons)}") from None
    customer = new_customer(values)
    # The enrichment is the file's (canonical text): a skipped lookup found nothing, and the
    # offline directory only vouches that the CEP exists.
    customer["address"].update({name: address[name] for name in CEP_FIELDS})
    return complete({**customer, "id": customer_id, **stamps, **lifecycle})


def _checked_lifecycle(data: Mapping[str, Any]) -> dict[str, Any]:
    """Status and its times as the lifecycle keeps them (a line without them: active)."""
    checked: dict[str, Any] = {}
    for f in _LIFECYCLE:
        value = data.get(f.name, f.spec.default)
        if value is not None and f.type is datetime:
            value = _checked_time(value, f.name)
        elif value is not None and f.name != "status":
            try:
                value = normalize_text(value)
            except TextError as exc:
                raise Refused(f"invalid: {f.name} {exc.code}") from None
        checked[f.name] = value
    if checked.get("status") not in STATUSES:
        raise Refused(f"status must be one of {', '.join(STATUSES)}")
    return checked


def _name(key: str) -> str:
    """A key named in a refusal: escaped and short (a hostile file chooses it)."""
    return json.dumps(key[:40], ensure_ascii=True)


def _checked_id(value: str) -> str:
    if parse_id(value) != value:
        raise Refused("the id is not 24 lower-case hex characters")
    created = ObjectId(value).generation_time
    if created > datetime.now(UTC) + _ID_CLOCK_SKEW:
        raise Refused("the id's time is in the future")
    return value


def _checked_stamps(data: Mapping[str, Any]) -> dict[str, datetime]:
    stamps = {name: _checked_time(data[name], name) for name in _STAMPS}
    if stamps["updated_at"] < stamps["created_at"]:
        raise Refused("updated_at is before created_at")
    return stamps


def _checked_time(text: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(f"{name} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise Refused(f"{name} has no UTC offset")
    return moment.astimezone(UTC)


def _cpf(data: Mapping[str, Any], codec: PiiCodec) -> str:
    if SEALED_CPF not in data:
        return str(data["cpf"])
    if "cpf" in data:
        raise Refused("both cpf and cpf_sealed")
    try:
        return codec.open(str(data[SEALED_CPF]), EXPORT_PURPOSE).decode()
    except (PiiKeyError, UnicodeDecodeError) as exc:
        raise Refused(f"cpf_sealed cannot be opened: {type(exc).__name__}") from None


def _checked_address(address: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(address.keys() - ADDRESS_KEYS)
    if unknown:
        raise Refused(f"unknown address keys: {', '.join(_name(k) for k in unknown[:10])}")
    if not isinstance(address.get("cep"), str):
        raise Refused("address.cep missing or not text")
    checked: dict[str, Any] = {}
    for f in ADDRESS_FIELDS:
        value = address.get(f.name, f.spec.default)
        if value is not None and not isinstance(value, str):
            raise Refused(f"wrong types (text or null expected): address.{f.name}")
        if value and f.type is datetime:
            value = _checked_time(value, f"address.{f.name}")
        elif value and f.name in _CEP_TEXT:  # "" stays "": a generic CEP has no street
            try:
                value = normalize_text(value)
            except TextError as exc:
                raise Refused(f"invalid: address.{f.name} {exc.code}") from None
            if len(value) > (f.spec.max_length or _ADDRESS_TEXT_MAX):
                raise Refused(f"invalid: address.{f.name} too long")
        checked[f.name] = value
    return checked
