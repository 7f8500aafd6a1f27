"""The audit trail over HTTP: a customer's entries, an actor's entries (newest first), and
the data-subject export (the whole record, its provenance and its disclosures)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web
from marshmallow import Schema, fields, validate

from service.api.customers import visible
from service.api.journal import change_of, recorded
from service.api.openapi import json_content, operation
from service.api.render import json_response
from service.api.schemas import CustomerSchema
from service.audit.chain import ACTIONS, PERSONAL_FIELDS, timestamp
from service.customers.canonical import parse_id
from service.customers.errors import CustomerNotFound
from service.customers.model import (
    ADDRESS_FIELDS,
    CEP_FIELDS,
    CUSTOMER_FIELDS,
    ID_PATTERN,
    now,
)
from service.customers.view import public_view
from service.storage.base import CustomerRepository
from service.storage.journal import journal_rows
from service.typedefs import repository_key, request_data_key

# What `encode_position` hands out: 8 bytes, URL-safe base64 without padding.
POSITION_CURSOR_PATTERN = r"^[A-Za-z0-9_-]{11}$"
_EXPORT_PAGE = 100


class AuditEntrySchema(Schema):
    id = fields.String(required=True, metadata={"description": "Opaque identifier"})
    at = fields.String(required=True, metadata={"format": "date-time"})
    actor = fields.String(required=True, metadata={"description": "The token's subject"})
    action = fields.String(
        required=True,
        metadata={"enum": list(ACTIONS)},
    )
    customer_id = fields.String(required=True, metadata={"pattern": ID_PATTERN})
    fields_ = fields.List(
        fields.String(),
        required=True,
        data_key="fields",
        metadata={"description": "Field names (shown in clear, or changed); never values"},
    )
    request_id = fields.String(required=True, allow_none=True)
    prev_hash = fields.String(required=True, metadata={"description": "hash of the entry before"})
    hash = fields.String(
        required=True, metadata={"description": "SHA-256 of the canonical entry (docs/audit.md)"}
    )


class AuditPageSchema(Schema):
    data = fields.List(fields.Nested(AuditEntrySchema), required=True)
    has_more = fields.Boolean(required=True)
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"pattern": POSITION_CURSOR_PATTERN}
    )


class _PageQuery(Schema):
    class Meta:
        unknown = "raise"

    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(
        validate=validate.Regexp(
            POSITION_CURSOR_PATTERN, error="The `cursor` is not one this API handed out."
        )
    )


class ActorQuerySchema(_PageQuery):
    actor = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class ProvenanceSchema(Schema):
    supplied = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "Fields the customer gave (address parts as address.<name>)"},
    )
    address = fields.Dict(
        required=True,
        metadata={
            "description": "Where the address came from: `source` (the CEP provider), "
            "`resolved_at` (when), `fields` (the address fields that came with the CEP; a "
            "street or neighborhood the CEP's address lacked is the customer's)"
        },
    )


class ExportSchema(Schema):
    customer = fields.Nested(CustomerSchema, required=True, metadata={"description": "Unmasked"})
    provenance = fields.Nested(ProvenanceSchema, required=True)
    disclosures = fields.List(fields.Nested(AuditEntrySchema), required=True)
    generated_at = fields.String(required=True, metadata={"format": "date-time"})


def _page(page: Any) -> web.Response:
    return json_response(
        {"data": page.items, "has_more": page.has_more, "next_cursor": page.next_cursor}
    )


@operation(
    "listCustomerAudit",
    tag="audit",
    summary="Who saw or changed this customer's data, newest first",
    query=_PageQuery,
    responses={200: json_content(AuditPageSchema, "A page of audit entries")},
    errors=(400, 404, 422),
)
async def customer_audit(request: web.Request) -> web.Response:
    customer_id = parse_id(request.match_info["customer_id"])
    if customer_id is None:
        raise CustomerNotFound()
    query = request[request_data_key]
    repository = request.app[repository_key]
    # The trail of a customer who is gone is still the trail; one in a status the caller may
    # not see (blocked, closed, anonymized without customers:restricted) is 404, as it is.
    customer = await repository.get(customer_id)
    if customer is not None and not visible(request, customer):
        raise CustomerNotFound()
    store = repository.audit
    page = await store.page(
        limit=query["limit"], cursor=query.get("cursor"), customer_id=customer_id
    )
    return _page(page)


@operation(
    "listActorAudit",
    tag="audit",
    summary="What one caller (token subject) saw or changed, newest first",
    query=ActorQuerySchema,
    responses={200: json_content(AuditPageSchema, "A page of audit entries")},
    errors=(400, 422),
)
async def actor_audit(request: web.Request) -> web.Response:
    query = request[request_data_key]
    store = request.app[repository_key].audit
    page = await store.page(limit=query["limit"], cursor=query.get("cursor"), actor=query["actor"])
    return _page(page)


def provenance(customer: Mapping[str, Any]) -> dict[str, Any]:
    """Which fields the customer gave and which came with the CEP (the field table's
    `origin`); `source` and `resolved_at` say from where and when."""
    address = customer.get("address") or {}
    source = address.get("source")
    supplied = [
        f.name for f in CUSTOMER_FIELDS if f.spec.origin == "caller" and customer.get(f.name)
    ]
    supplied += [
        f"address.{f.name}"
        for f in ADDRESS_FIELDS
        if f.spec.origin == "caller" and address.get(f.name) is not None
    ]
    looked_up = [
        f"address.{name}"
        for name in CEP_FIELDS
        if name not in ("source", "resolved_at") and address.get(name) is not None
    ]
    return {
        "supplied": supplied,
        "address": {
            "source": source,
            "resolved_at": _text(address.get("resolved_at")),
            "fields": looked_up if source is not None else [],
        },
    }


def _text(moment: Any) -> Any:
    return timestamp(moment) if isinstance(moment, datetime) else moment


async def disclosures(repository: CustomerRepository, customer_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await repository.audit.page(
            limit=_EXPORT_PAGE, cursor=cursor, customer_id=customer_id
        )
        entries += page.items
        if page.next_cursor is None:
            return entries
        cursor = page.next_cursor


@operation(
    "exportCustomer",
    tag="audit",
    summary="Data-subject export: the whole record unmasked, its provenance and disclosures",
    responses={200: json_content(ExportSchema, "The export (recorded as an `export` entry)")},
    errors=(404,),
)
async def export_customer(request: web.Request) -> web.Response:
    repository = request.app[repository_key]
    customer = await repository.get(request.match_info["customer_id"])
    if customer is None or not visible(request, customer):
        raise CustomerNotFound()
    change = change_of(request, "export", PERSONAL_FIELDS)
    # written before the answer: an export that was sent is always on record
    await repository.audit.append([journal_rows(change, customer["id"]).audit])
    recorded(request, change)
    return json_response(
        {
            "customer": public_view(customer),
            "provenance": provenance(customer),
            "disclosures": await disclosures(repository, customer["id"]),
            "generated_at": timestamp(now()),
        }
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/customers/{customer_id}/audit", customer_audit, allow_head=False)
    app.router.add_get("/api/v1/customers/{customer_id}/export", export_customer, allow_head=False)
    app.router.add_get("/api/v1/audit", actor_audit, allow_head=False)
