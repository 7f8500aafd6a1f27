"""Request parsing: the marshmallow schemas a handler declares (`query` and `body` of its
`@operation`, the same declaration the OpenAPI document is built from) are loaded here,
before the handler runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn

from aiohttp import web
from aiohttp.typedefs import Handler
from marshmallow import Schema, ValidationError
from webargs.aiohttpparser import AIOHTTPParser, is_json_request

from service.api.openapi import declared_operation
from service.errors import FieldError, InvalidFields, MalformedRequest, UnsupportedMediaType
from service.typedefs import request_data_key

# marshmallow's default messages -> stable codes clients can branch on
_CODES = {
    "Missing data for required field.": "required",
    "Unknown field.": "unknown_field",
    "Field may not be null.": "null",
    "Not a valid string.": "invalid_type",
    "Not a valid integer.": "invalid_type",
}


def _field_errors(messages: Any, prefix: str = "") -> list[FieldError]:
    errors = []
    for name, value in messages.items():
        field = f"{prefix}{name}"
        if isinstance(value, Mapping):
            errors.extend(_field_errors(value, f"{field}."))
            continue
        for message in value if isinstance(value, list) else [value]:
            errors.append(FieldError(field, _CODES.get(message, "invalid"), str(message)))
    return errors


class RequestParser(AIOHTTPParser):
    """webargs' parser, raising our problems: 400 for a body that is not a JSON object,
    415 for a body that is not JSON at all, 422 naming every bad field otherwise."""

    async def load_json(self, req: web.Request, schema: Schema) -> Any:
        if not req.body_exists:
            raise MalformedRequest("A JSON object body is required.")
        if not is_json_request(req):
            raise UnsupportedMediaType("Send the body as application/json.")
        try:
            return await req.json(loads=json.loads)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise MalformedRequest("The body is not valid JSON.") from None

    def handle_error(
        self, error: ValidationError, req: web.Request, schema: Schema, **kwargs: Any
    ) -> NoReturn:
        messages = error.messages if isinstance(error.messages, dict) else {}
        # webargs nests messages by location ({"json": {...}, "querystring": {...}})
        by_field: dict[str, Any] = {}
        for location_messages in messages.values():
            if isinstance(location_messages, Mapping):
                by_field.update(location_messages)
        if "_schema" in by_field or not by_field:
            raise MalformedRequest("The body must be a JSON object.")
        raise InvalidFields(_field_errors(by_field))


request_parser = RequestParser()


@web.middleware
async def parsing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Load the handler's declared schemas into `request[request_data_key]`."""
    declared = declared_operation(request.match_info.handler)
    data: dict[str, Any] = {}
    for schema, location in declared.request_schemas() if declared else ():
        data.update(await request_parser.parse(schema, request, location=location, unknown=None))
    request[request_data_key] = data
    return await handler(request)
