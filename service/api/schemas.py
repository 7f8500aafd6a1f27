"""marshmallow schemas: they parse requests and drive the OpenAPI document.

Types and shapes are checked here (422 `invalid_type`, `required`, `unknown_field`);
what a value means (is this a real CPF?) is the validator pipeline's job.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import RAISE, Schema, fields, validate


class Trimmed(fields.String):
    """A string with outer whitespace removed and inner runs of whitespace folded to one."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        return re.sub(r"\s+", " ", text).strip()


def _text(max_length: int, **kwargs: Any) -> Trimmed:
    return Trimmed(validate=validate.Length(min=1, max=max_length), **kwargs)


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class CustomerCreateSchema(_Strict):
    name = _text(200, required=True, metadata={"example": "Maria da Silva"})
    email = _text(320, required=True, metadata={"example": "maria@example.com"})
    phone = _text(40, required=True, metadata={"example": "(11) 91234-5678"})
    cep = _text(20, required=True, metadata={"example": "01001-000"})
    cpf = _text(20, required=True, metadata={"example": "529.982.247-25"})
    number = _text(20, allow_none=True, metadata={"example": "100"})
    complement = _text(100, allow_none=True, metadata={"example": "apto 12"})


class CustomerPatchSchema(CustomerCreateSchema):
    """Any subset of the create fields; `number` and `complement` may be set to null."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(partial=True, **kwargs)


class AddressSchema(Schema):
    cep = fields.String()
    street = fields.String(allow_none=True)
    neighborhood = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    state = fields.String(allow_none=True)
    number = fields.String(allow_none=True)
    complement = fields.String(allow_none=True)
    source = fields.String(allow_none=True, metadata={"description": "CEP provider"})


class CustomerSchema(Schema):
    id = fields.String(metadata={"description": "Opaque identifier"})
    name = fields.String()
    email = fields.String()
    phone = fields.String(metadata={"description": "E.164, or masked by policy"})
    cpf = fields.String(metadata={"description": "11 digits, or masked by policy"})
    address = fields.Nested(AddressSchema)
    created_at = fields.String(metadata={"format": "date-time"})
    updated_at = fields.String(metadata={"format": "date-time"})


class CustomerPageSchema(Schema):
    data = fields.List(fields.Nested(CustomerSchema))
    has_more = fields.Boolean()
    next_cursor = fields.String(allow_none=True)


class ListQuerySchema(_Strict):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(validate=validate.Length(min=1, max=200))
    email = fields.String(validate=validate.Length(min=1, max=320))
    cpf = fields.String(validate=validate.Length(min=1, max=20))


class FieldErrorSchema(Schema):
    field = fields.String()
    code = fields.String()
    message = fields.String()


class ProblemSchema(Schema):
    """RFC 9457 problem details (`application/problem+json`)."""

    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.List(fields.Nested(FieldErrorSchema))
