"""marshmallow schemas: they parse requests and drive the OpenAPI document.

Types and shapes are checked here (422 `invalid_type`, `required`, `unknown_field`);
what a value means (is this a real CPF?) is the validator pipeline's job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from service.customers.canonical import TextError, normalize_text
from service.customers.errors import InvalidCursor
from service.customers.lifecycle import BLOCK_REASON_MAX_LENGTH
from service.customers.model import (
    ADDRESS_FIELDS,
    CPF_PATTERN,
    CUSTOMER_FIELDS,
    ID_PATTERN,
    REQUEST_FIELDS,
    Field,
)


class Trimmed(fields.String):
    """Printable text in NFC, trimmed, inner whitespace folded (`normalize_text`); control
    characters and values that show nothing fail with the codes of `TEXT_ERRORS`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalize_text(text)
        except TextError as exc:
            raise ValidationError(exc.message) from None


def _text(max_length: int, **kwargs: Any) -> Trimmed:
    return Trimmed(validate=validate.Length(min=1, max=max_length), **kwargs)


# What `encode_cursor` hands out: 12 bytes, URL-safe base64 without padding.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{16}$"


class _Strict(Schema):
    class Meta:
        unknown = RAISE


def _request_field(f: Field, *, patch: bool) -> Trimmed:
    assert f.spec.max_length is not None, f"request field {f.name} needs a max_length"
    return _text(
        f.spec.max_length,
        required=f.spec.request == "required" and not patch,
        allow_none=f.nullable,
        metadata=dict(f.spec.doc),
    )


def _response_field(f: Field) -> fields.String:
    """A personal field is null once the customer is anonymized."""
    metadata = dict(f.spec.doc)
    if f.type is datetime:
        metadata["format"] = "date-time"
    return fields.String(required=True, allow_none=f.nullable or f.spec.personal, metadata=metadata)


# The request and response schemas, from the field table of `service.customers.model`.
# A registration: the request fields. A PATCH: any subset; the nullable ones may be null.
CustomerCreateSchema = _Strict.from_dict(
    {f.name: _request_field(f, patch=False) for f in REQUEST_FIELDS}, name="CustomerCreateSchema"
)
CustomerPatchSchema = _Strict.from_dict(
    {f.name: _request_field(f, patch=True) for f in REQUEST_FIELDS}, name="CustomerPatchSchema"
)
AddressSchema = Schema.from_dict(
    {f.name: _response_field(f) for f in ADDRESS_FIELDS if f.spec.response}, name="AddressSchema"
)
CustomerSchema = Schema.from_dict(
    {
        f.name: fields.Nested(AddressSchema, required=True)
        if f.name == "address"
        else _response_field(f)
        for f in CUSTOMER_FIELDS
        if f.spec.response
    },
    name="CustomerSchema",
)


class BlockSchema(_Strict):
    """`POST …/block`: why (optional; printable text, kept while the customer is blocked)."""

    reason = _text(BLOCK_REASON_MAX_LENGTH, metadata={"example": "fraud review #1234"})


class CustomerIdSchema(Schema):
    """What a caller without `customers:read` gets from POST and PATCH: the id only."""

    id = fields.String(
        required=True, metadata={"description": "Opaque identifier", "pattern": ID_PATTERN}
    )


# A POST or PATCH answers the customer, or only its id to a caller that may not read it.
# anyOf, not oneOf: response schemas are open, so a customer also has the id-only shape.
CUSTOMER_OR_ID = {"anyOf": [CustomerSchema, CustomerIdSchema]}


class CustomerPageSchema(Schema):
    data = fields.List(fields.Nested(CustomerSchema), required=True)
    has_more = fields.Boolean(required=True)
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"pattern": CURSOR_PATTERN}
    )


class ListQuerySchema(_Strict):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    # Checked here, not only when decoded: a string base64 would half-read is no cursor.
    cursor = fields.String(validate=validate.Regexp(CURSOR_PATTERN, error=InvalidCursor.MESSAGE))
    # Exact-match filters on the canonical forms (email lowercased; CPF bare or masked).
    email = fields.String(
        validate=validate.Length(min=1, max=320),
        metadata={"description": "Exact match, case-insensitive"},
    )
    cpf = fields.String(
        validate=validate.Regexp(CPF_PATTERN, error="Not a CPF: 11 digits, bare or masked."),
        metadata={"description": "Exact match; 11 digits, bare or 000.000.000-00"},
    )


class FieldErrorSchema(Schema):
    field = fields.String(required=True, metadata={"example": "cpf"})
    code = fields.String(required=True, metadata={"example": "invalid"})
    message = fields.String(required=True)


class ProblemSchema(Schema):
    """RFC 9457 problem details (`application/problem+json`)."""

    type = fields.String(required=True, metadata={"format": "uri-reference"})
    title = fields.String(required=True)
    status = fields.Integer(required=True, validate=validate.Range(min=400, max=599))
    detail = fields.String(required=True)
    errors = fields.List(
        fields.Nested(FieldErrorSchema),
        metadata={"description": "Every failing field (input errors only)"},
    )
    code = fields.String(
        metadata={"description": "A stable code for a problem that is not about one field"}
    )


class LiveSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class CheckSchema(Schema):
    state = fields.String(required=True, validate=validate.OneOf(["ok", "degraded", "down"]))
    latency_ms = fields.Float(required=True, validate=validate.Range(min=0))
    detail = fields.String(metadata={"description": "The kind of failure (not ok only)"})


class WebhookStateSchema(Schema):
    pending = fields.Integer(required=True, metadata={"description": "Deliveries owed"})
    dead_letters = fields.Integer(
        required=True, metadata={"description": "Given up after every attempt (`events replay`)"}
    )
    lag_s = fields.Float(
        required=True, metadata={"description": "Age of the oldest event still owed (0: none)"}
    )


class ReadySchema(Schema):
    status = fields.String(
        required=True,
        validate=validate.OneOf(["ok", "degraded", "unavailable"]),
        metadata={"description": "`unavailable` (503) when the API cannot serve"},
    )
    checks = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(CheckSchema),
        required=True,
        metadata={
            "description": "Each dependency: storage, policy_engine, jwks, cep:<provider>, "
            "cep_cache, ratelimit_store (Redis only)"
        },
    )
    breakers = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.OneOf(["closed", "half_open", "open"])),
        required=True,
        metadata={"description": "Circuit breaker of each guarded dependency (open: degraded)"},
    )
    webhooks = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(WebhookStateSchema),
        metadata={"description": "Each endpoint of `events.webhooks` (state of a few s ago)"},
    )
