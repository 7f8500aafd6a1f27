"""Request parsing: the marshmallow schemas a handler declares (`query` and `body` of its
`@operation`, the same declaration the OpenAPI document is built from) are loaded here,
before the handler runs.

Hostile input never gets past this module as a 500: a body is strict UTF-8 JSON (RFC 8259)
with unique, printable keys and a bounded depth; a query names each parameter once; every
query value is printable text in NFC (`normalize_text`), as every text field of a body is.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any, NoReturn

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from marshmallow import Schema, ValidationError
from multidict import MultiDict, MultiDictProxy
from webargs.aiohttpparser import AIOHTTPParser, is_json_request
from webargs.multidictproxy import MultiDictProxy as ParsedQuery

from service.api.openapi import declared_operation
from service.customers.canonical import TEXT_ERRORS, TextError, normalize_text
from service.errors import (
    ClientClosedRequest,
    FieldError,
    InvalidFields,
    MalformedRequest,
    RequestTimeout,
    UnsupportedMediaType,
)
from service.typedefs import request_data_key

# Request bodies are flat objects; anything nested deeper is not a customer.
MAX_JSON_DEPTH = 32
# A client that sends its body slower than this holds a handler for nothing.
BODY_TIMEOUT_S = 30.0
log = logging.getLogger(__name__)

# marshmallow's default messages -> stable codes clients can branch on
_CODES = {
    "Missing data for required field.": "required",
    "Unknown field.": "unknown_field",
    "Field may not be null.": "null",
    "Not a valid string.": "invalid_type",
    "Not a valid integer.": "invalid_type",
    **{message: code for code, message in TEXT_ERRORS.items()},
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


def _is_printable_name(name: str) -> bool:
    try:
        return normalize_text(name) == name
    except TextError:
        return False


class _BadJson(ValueError):
    """A JSON text that parses but that we refuse; the message is safe to show."""


def _unique_printable_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook`: a repeated key is refused, not "last one wins"; a key that is not
    printable text is refused before it can reach a field name in an answer or a log."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _BadJson("The body names a field more than once.")
    if not all(_is_printable_name(key) for key in obj):
        raise _BadJson("Field names must be printable text.")
    return obj


def _refuse_constant(name: str) -> NoReturn:
    raise _BadJson(f"{name} is not JSON.")


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in `value` (iterative: no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def parse_json_body(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate or unprintable keys, bounded depth.

    Raises MalformedRequest (400) for anything else, including integer literals past
    Python's digit limit and nesting deep enough to exhaust the parser's recursion.
    """
    try:
        value = json.loads(
            body.decode("utf-8"),
            object_pairs_hook=_unique_printable_keys,
            parse_constant=_refuse_constant,
        )
    except _BadJson as exc:
        raise MalformedRequest(str(exc)) from None
    except RecursionError:
        raise MalformedRequest("The body nests too deeply.") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, int digits limit
        raise MalformedRequest("The body is not valid JSON (UTF-8).") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise MalformedRequest("The body nests too deeply.")
    return value


async def read_body(request: web.BaseRequest) -> bytes:
    """The body, decompressed; a broken Content-Encoding or a stalled client is a 4xx."""
    try:
        if request.content.is_eof():  # the whole body has arrived: nothing to wait for
            return await request.read()
        async with asyncio.timeout(BODY_TIMEOUT_S):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout("The body did not arrive in time.") from None
    except (web.RequestPayloadError, HttpProcessingError):
        raise MalformedRequest("The body cannot be read (bad Content-Encoding?).") from None
    except ConnectionResetError:
        log.info("client hung up before its body arrived (%s %s)", request.method, request.path)
        raise ClientClosedRequest("The connection closed before the body arrived.") from None


class RequestParser(AIOHTTPParser):
    """webargs' parser, raising our problems: 400 for a body that is not a JSON object,
    415 for a body that is not JSON at all, 422 naming every bad field otherwise."""

    async def load_json(self, req: web.Request, schema: Schema) -> Any:
        if not req.body_exists:
            raise MalformedRequest("A JSON object body is required.")
        if not is_json_request(req):
            raise UnsupportedMediaType("Send the body as application/json.")
        if (req.charset or "utf-8").lower() != "utf-8":
            raise UnsupportedMediaType("JSON is UTF-8: send charset=utf-8 or no charset.")
        return parse_json_body(await read_body(req))

    def load_querystring(self, req: web.Request, schema: Schema) -> ParsedQuery:
        """Each parameter once, its value printable text (NFC, trimmed)."""
        errors: list[FieldError] = []
        values: MultiDict[str] = MultiDict()
        for name in dict.fromkeys(req.query):
            if not _is_printable_name(name):
                raise MalformedRequest("Query parameter names must be printable text.")
            given = req.query.getall(name)
            if len(given) > 1:
                errors.append(FieldError(name, "repeated", "Give this parameter once."))
                continue
            try:
                values[name] = normalize_text(given[0])
            except TextError as exc:
                errors.append(FieldError(name, exc.code, exc.message))
        if errors:
            raise InvalidFields(errors)
        return self._makeproxy(MultiDictProxy(values), schema)

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
        optional = declared is not None and not declared.body_required
        if location == "json" and optional and not request.body_exists:
            continue  # an optional body, not sent
        data.update(await request_parser.parse(schema, request, location=location, unknown=None))
    request[request_data_key] = data
    return await handler(request)
