"""marshmallow schemas: they parse requests and drive the OpenAPI document.

Types and shapes are checked here (422 `invalid_type`, `required`, `unknown_field`);
what a value means (is this a real CPF?) is the validator pipeline's job.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from service.customers.canonical import TextError, normalize_text
from service.customers.lifecycle import BLOCK_REASON_MAX_LENGTH, STATUSES


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


# The forms the validators accept, as JSON Schema patterns (ECMA-262: `[0-9]`, never `\d`).
# They document the request fields; the validators stay the ones that decide (and answer 422
# with every failing field at once), so a disabled validator really stops checking.
CPF_PATTERN = r"^(?:[0-9]{11}|[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2})$"
CEP_PATTERN = r"^[0-9]{2}\.?[0-9]{3}-?[0-9]{3}$"
PHONE_PATTERN = r"^[0-9+() .-]{8,40}$"
# What `encode_cursor` hands out: 12 bytes, URL-safe base64 without padding.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{16}$"
ID_PATTERN = r"^[0-9a-fA-F]{24}$"


def _documented(pattern: str, example: str, description: str) -> dict[str, Any]:
    return {"pattern": pattern, "example": example, "description": description}


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class CustomerCreateSchema(_Strict):
    name = _text(200, required=True, metadata={"example": "Maria da Silva"})
    email = _text(320, required=True, metadata={"format": "email", "example": "maria@example.com"})
    phone = _text(
        40,
        required=True,
        metadata=_documented(PHONE_PATTERN, "(11) 91234-5678", "A Brazilian mobile or landline"),
    )
    cep = _text(
        20,
        required=True,
        metadata=_documented(CEP_PATTERN, "01001-000", "8 digits, 00000-000 or 00.000-000"),
    )
    cpf = _text(
        20,
        required=True,
        metadata=_documented(CPF_PATTERN, "529.982.247-25", "11 digits, bare or 000.000.000-00"),
    )
    number = _text(20, allow_none=True, metadata={"example": "100"})
    complement = _text(100, allow_none=True, metadata={"example": "apto 12"})


class CustomerPatchSchema(CustomerCreateSchema):
    """Any subset of the create fields; `number` and `complement` may be set to null."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(partial=True, **kwargs)


class BlockSchema(_Strict):
    """`POST …/block`: why (optional; printable text, kept while the customer is blocked)."""

    reason = _text(BLOCK_REASON_MAX_LENGTH, metadata={"example": "fraud review #1234"})


class AddressSchema(Schema):
    cep = fields.String(
        required=True, allow_none=True, metadata={"description": "8 digits (null: anonymized)"}
    )
    street = fields.String(required=True, allow_none=True)
    neighborhood = fields.String(required=True, allow_none=True)
    city = fields.String(required=True, allow_none=True)
    state = fields.String(required=True, allow_none=True)
    number = fields.String(required=True, allow_none=True)
    complement = fields.String(required=True, allow_none=True)
    source = fields.String(required=True, allow_none=True, metadata={"description": "CEP provider"})


class CustomerSchema(Schema):
    id = fields.String(
        required=True, metadata={"description": "Opaque identifier", "pattern": ID_PATTERN}
    )
    # The personal fields are null once the customer is anonymized.
    name = fields.String(required=True, allow_none=True)
    email = fields.String(required=True, allow_none=True)
    phone = fields.String(
        required=True, allow_none=True, metadata={"description": "E.164, or masked by policy"}
    )
    cpf = fields.String(
        required=True, allow_none=True, metadata={"description": "11 digits, or masked by policy"}
    )
    address = fields.Nested(AddressSchema, required=True)
    status = fields.String(
        required=True,
        validate=validate.OneOf(STATUSES),
        metadata={
            "description": "active; blocked (processing suspended, no change until unblocked); "
            "closed (relationship ended, kept until `purge_after`); anonymized (personal "
            "data erased). Callers without `customers:restricted` see only active customers."
        },
    )
    created_at = fields.String(required=True, metadata={"format": "date-time"})
    updated_at = fields.String(required=True, metadata={"format": "date-time"})
    closed_at = fields.String(
        metadata={"format": "date-time", "description": "closed and anonymized customers"}
    )
    purge_after = fields.String(
        metadata={
            "format": "date-time",
            "description": "when a closed customer is anonymized (closed_at + "
            "retention.closed_days)",
        }
    )
    anonymized_at = fields.String(metadata={"format": "date-time"})
    blocked_reason = fields.String(metadata={"description": "why it is blocked (blocked only)"})


class CustomerIdSchema(Schema):
    """What a caller without `customers:read` gets from POST and PATCH: the id only."""

    class Meta:
        unknown = RAISE  # documented as additionalProperties: false, so oneOf picks one

    id = fields.String(
        required=True, metadata={"description": "Opaque identifier", "pattern": ID_PATTERN}
    )


# A POST or PATCH answers the customer, or only its id to a caller that may not read it.
CUSTOMER_OR_ID = {"oneOf": [CustomerSchema, CustomerIdSchema]}


class CustomerPageSchema(Schema):
    data = fields.List(fields.Nested(CustomerSchema), required=True)
    has_more = fields.Boolean(required=True)
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"pattern": CURSOR_PATTERN}
    )


class ListQuerySchema(_Strict):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    # Checked here, not only when decoded: a string base64 would half-read is no cursor.
    cursor = fields.String(
        validate=validate.Regexp(
            CURSOR_PATTERN, error="The `cursor` is not one this API handed out."
        )
    )
    email = fields.String(validate=validate.Length(min=1, max=320))
    cpf = fields.String(validate=validate.Length(min=1, max=20))


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
