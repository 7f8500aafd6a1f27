"""OpenAPI 3.1 at `/api/docs/openapi.json`, Swagger UI (bundled, offline) at `/api/docs`.

One declaration per handler, `@operation(...)`: the parsing middleware loads its `query`
and `body` schemas, and `build_spec` turns it, with the app's routes, into the document.
apispec builds the document directly: aiohttp-apispec hard-codes Swagger 2.0.

The document describes the running configuration: request schemas are closed (an unknown
member is refused), response schemas open (a client must accept members added later), and
a request field's pattern or format is documented only while the validator that checks
it is enabled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler as RouteHandler
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema
from swagger_ui_bundle import swagger_ui_path

from service.api.problems import PROBLEM_CONTENT_TYPE
from service.api.render import json_response
from service.api.schemas import ProblemSchema
from service.customers.model import ID_PATTERN
from service.typedefs import pipeline_key

Handler = TypeVar("Handler", bound=Callable[..., Any])
SchemaType = type[Schema] | Schema

DOCUMENT_URL = "/api/docs/openapi.json"
UI_URL = "/api/docs"
STATIC_URL = "/api/docs/static"
SECURITY_SCHEME = "bearer"
# request field -> the built-in validator whose check its documented pattern/format states
CHECKED_BY = {"email": "email", "phone": "phone", "cpf": "cpf", "cep": "cep"}

# Every status an operation may answer with a problem, and why.
ERROR_DESCRIPTIONS = {
    400: "Malformed request: no body, a body that is not one JSON object, or a query "
    "parameter name that is not printable text",
    401: "No, bad or expired token",
    403: "The policy denies this request",
    404: "No customer has this id (a malformed id included)",
    409: "A request with this `Idempotency-Key` is still running (POST), or the customer's "
    "status does not allow this: `code` is `customer_blocked` (blocked: only unblock and "
    "anonymize apply) or `invalid_status` (e.g. unblock an active customer)",
    410: "The `after` cursor is older than the events kept (`code`: `cursor_expired`)",
    413: "The body is larger than `server.max_body_bytes`",
    415: "The body is not `application/json`",
    422: "Invalid fields: `errors` lists every one of them",
    429: "The caller is over its rate limit (`ratelimit` in config)",
    503: "A dependency (policy engine, token issuer, CEP providers, database) is down",
}
# What the security middleware may answer on every authenticated operation, whatever the
# handler does (429 only where `ratelimit.enabled` is set).
AUTHENTICATED_ERRORS = (401, 403, 429, 503)
ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"required": True, "description": "`Bearer`, with the error"}},
    429: {
        "Retry-After": {"required": True, "description": "Whole seconds until a token is free"},
        "RateLimit-Limit": {"required": True, "description": "Bucket size (burst)"},
        "RateLimit-Remaining": {"required": True, "description": "Tokens left"},
        "RateLimit-Reset": {"required": True, "description": "Seconds until the bucket is full"},
        "RateLimit-Policy": {"required": True, "description": "`<burst>;w=<refill seconds>`"},
    },
    409: {
        "Retry-After": {
            "required": False,
            "description": "Seconds to wait before a retry (`Idempotency-Key` in flight)",
        }
    },
    503: {"Retry-After": {"required": True, "description": "Seconds to wait before a retry"}},
}


@dataclass(frozen=True)
class Operation:
    """What a handler accepts and answers; the parser and the document both read it."""

    operation_id: str
    summary: str
    tag: str
    responses: Mapping[int, Mapping[str, Any]]
    errors: Sequence[int] = ()
    query: Schema | None = None
    body: Schema | None = None
    authenticated: bool = True
    # Request headers, as OpenAPI parameter objects (`Idempotency-Key` on POST goes here).
    headers: Sequence[Mapping[str, Any]] = ()
    body_required: bool = True  # False: a request without a body is parsed as `{}`

    def request_schemas(self) -> list[tuple[Schema, str]]:
        """(schema, webargs location) pairs, in the order the parser loads them."""
        declared = [(self.query, "querystring"), (self.body, "json")]
        return [(schema, location) for schema, location in declared if schema is not None]


def operation(
    operation_id: str,
    *,
    summary: str,
    tag: str,
    responses: Mapping[int, Mapping[str, Any]],
    errors: Sequence[int] = (),
    query: SchemaType | None = None,
    body: SchemaType | None = None,
    authenticated: bool = True,
    headers: Sequence[Mapping[str, Any]] = (),
    body_required: bool = True,
) -> Callable[[Handler], Handler]:
    def declare(handler: Handler) -> Handler:
        handler.__operation__ = Operation(  # type: ignore[attr-defined]
            operation_id=operation_id,
            summary=summary,
            tag=tag,
            responses=responses,
            errors=(*AUTHENTICATED_ERRORS, *errors) if authenticated else tuple(errors),
            query=_instance(query),
            body=_instance(body),
            authenticated=authenticated,
            headers=tuple(headers),
            body_required=body_required,
        )
        return handler

    return declare


@dataclass(frozen=True)
class Webhook:
    """A request this API sends (OpenAPI 3.1 `webhooks`): its body and headers."""

    summary: str
    description: str
    body: type[Schema]
    headers: Sequence[Mapping[str, Any]]
    responses: Mapping[str, Any]


WEBHOOKS: dict[str, Webhook] = {}


def webhook(name: str, declared: Webhook) -> None:
    """Declare an outgoing request for the document (modules do it when they are imported)."""
    WEBHOOKS[name] = declared


def declared_operation(handler: Any) -> Operation | None:
    found = getattr(handler, "__operation__", None)
    return found if isinstance(found, Operation) else None


def json_content(
    schema: SchemaType | Mapping[str, Any], description: str, **extra: Any
) -> dict[str, Any]:
    """A response with a JSON body of `schema` (a schema, or a `oneOf` of schemas);
    `extra` adds `headers` or `links`."""
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def no_content(description: str) -> dict[str, Any]:
    return {"description": description}


def _instance(schema: SchemaType | None) -> Schema | None:
    return schema() if isinstance(schema, type) else schema


def _schema_name(schema: SchemaType) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__.removesuffix("Schema")


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {PROBLEM_CONTENT_TYPE: {"schema": ProblemSchema}},
    }
    if status in ERROR_HEADERS:
        response["headers"] = {
            name: {"schema": {"type": "string"}, **header}
            for name, header in ERROR_HEADERS[status].items()
        }
    return response


def _path_parameter(name: str) -> dict[str, Any]:
    # The only path parameter is a customer id; a malformed one is answered 404.
    return {
        "in": "path",
        "name": name,
        "required": True,
        "schema": {"type": "string", "pattern": ID_PATTERN},
    }


def _operation_object(declared: Operation, path_keys: Sequence[str]) -> dict[str, Any]:
    responses: dict[str, Any] = {str(code): dict(r) for code, r in declared.responses.items()}
    responses.update({str(code): _error_response(code) for code in sorted(declared.errors)})
    parameters: list[dict[str, Any]] = [_path_parameter(name) for name in path_keys]
    if declared.query is not None:
        parameters.append({"in": "query", "schema": declared.query})
    parameters.extend(dict(header) for header in declared.headers)
    document: dict[str, Any] = {
        "operationId": declared.operation_id,
        "summary": declared.summary,
        "tags": [declared.tag],
        "responses": responses,
    }
    if parameters:
        document["parameters"] = parameters
    if declared.body is not None:
        document["requestBody"] = {
            "required": declared.body_required,
            "content": {"application/json": {"schema": declared.body}},
        }
    if declared.authenticated:
        document["security"] = [{SECURITY_SCHEME: []}]
    return document


def build_spec(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every declared route of `app`."""
    spec = APISpec(
        title="Customer registry API",
        version="v1",
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin(schema_name_resolver=_schema_name)],
        info={"description": "Validated, standardized customer records behind JWT + OPA."},
    )
    spec.components.security_scheme(
        SECURITY_SCHEME,
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A JWT from your identity provider (`python -m service token` locally)",
        },
    )
    for declared_hook in WEBHOOKS.values():  # named components, so the document can $ref them
        spec.components.schema(_schema_name(declared_hook.body), schema=declared_hook.body)
    request_schemas: set[str] = set()
    for route in app.router.routes():
        declared = declared_operation(route.handler)
        if declared is None or route.resource is None:
            continue
        path = route.resource.canonical  # the template: /api/v1/customers/{customer_id}
        operation_object = _operation_object(declared, re.findall(r"\{(\w+)\}", path))
        spec.path(path=path, operations={route.method.lower(): operation_object})
        if declared.body is not None:
            request_schemas.add(_schema_name(declared.body))
    document = spec.to_dict()
    enabled = {validator.name for validator in app[pipeline_key].validators}
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        if name in request_schemas:
            schema["additionalProperties"] = False
            for field, validator in CHECKED_BY.items():
                if validator not in enabled and field in schema.get("properties", {}):
                    for claim in ("pattern", "format"):
                        schema["properties"][field].pop(claim, None)
        else:
            schema["additionalProperties"] = True  # open: members may be added later
    if WEBHOOKS:
        document["webhooks"] = {name: _webhook_object(hook) for name, hook in WEBHOOKS.items()}
    return document


def _webhook_object(hook: Webhook) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{_schema_name(hook.body)}"}
    return {
        "post": {
            "summary": hook.summary,
            "description": hook.description,
            "parameters": [dict(header) for header in hook.headers],
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": dict(hook.responses),
        }
    }


_INDEX = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>Customer registry API</title>
  <link rel="stylesheet" href="{static}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{static}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{static}/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: {url}, dom_id: "#swagger-ui", deepLinking: true}});
  </script>
</body>
</html>
"""


def setup_openapi(app: web.Application) -> None:
    """Serve the document of the routes declared so far, and the Swagger UI that reads it.

    Call it after every route is added: the document is built once, here.
    """
    document = build_spec(app)
    index = _INDEX.format(static=STATIC_URL, url=json.dumps(DOCUMENT_URL))

    async def openapi_document(request: web.Request) -> web.Response:
        return json_response(document)

    async def swagger_ui(request: web.Request) -> web.Response:
        return web.Response(text=index, content_type="text/html")

    app.router.add_get(DOCUMENT_URL, openapi_document, allow_head=False)
    app.router.add_get(UI_URL, swagger_ui, allow_head=False)
    for name in UI_ASSETS:
        app.router.add_get(f"{STATIC_URL}/{name}", _asset(Path(swagger_ui_path, name)))


# The files our page loads, and only those: the bundle's own index.html and initializer
# point at the petstore demo, and its oauth2-redirect page would be one more surface.
UI_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")


def _asset(path: Path) -> RouteHandler:
    async def serve(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path)

    return serve
