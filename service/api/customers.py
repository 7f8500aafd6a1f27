"""The `/api/v1/customers` handlers: parse (schemas) -> domain (pipeline, repository) -> render."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from typing import Any

from aiohttp import web
from aiohttp_apispec import docs, querystring_schema, request_schema, response_schema

from service.api.schemas import (
    CustomerCreateSchema,
    CustomerPageSchema,
    CustomerPatchSchema,
    CustomerSchema,
    ListQuerySchema,
    ProblemSchema,
)
from service.authz.masking import mask_customer
from service.customers.canonical import canonical_cpf
from service.customers.errors import CustomerNotFound
from service.customers.model import changes_from, new_customer, public_view
from service.typedefs import (
    cep_resolver_key,
    decision_key,
    pipeline_key,
    repository_key,
    request_data_key,
)
from service.validation.base import ValidationContext

# UTF-8 as it is ("Praça da Sé"), not \u escapes: the body is declared UTF-8 anyway.
json_response = partial(web.json_response, dumps=partial(json.dumps, ensure_ascii=False))

# OpenAPI: these operations need `Authorization: Bearer <JWT>`.
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_ERRORS = {
    code: {"schema": ProblemSchema, "description": text}
    for code, text in {
        400: "Malformed request",
        401: "No or bad token",
        403: "Policy denies",
        404: "Unknown or malformed id",
        413: "Body too large",
        415: "Body is not JSON",
        422: "Invalid fields",
        503: "A dependency is down; nothing stored",
    }.items()
}


def render(request: web.Request, customer: Mapping[str, Any]) -> dict[str, Any]:
    """The public view, minus what the policy decision says this caller may not see."""
    return mask_customer(public_view(customer), request[decision_key].masked_fields)


def _context(request: web.Request, customer_id: str | None = None) -> ValidationContext:
    return ValidationContext(
        customers=request.app[repository_key],
        cep=request.app[cep_resolver_key],
        customer_id=customer_id,
    )


@docs(
    tags=["customers"],
    security=BEARER,
    summary="List customers (creation order, cursor pagination)",
    responses=_ERRORS,
)
@querystring_schema(ListQuerySchema)
@response_schema(CustomerPageSchema, 200)
async def list_customers(request: web.Request) -> web.Response:
    query = request[request_data_key]
    filters: dict[str, str] = {name: query[name] for name in ("email", "cpf") if name in query}
    if "cpf" in filters:
        # "529.982.247-25" and "52998224725" name one person; anything else matches nobody.
        filters["cpf"] = canonical_cpf(filters["cpf"]) or filters["cpf"]
    page = await request.app[repository_key].page(
        limit=query["limit"], cursor=query.get("cursor"), filters=filters
    )
    return json_response(
        {
            "data": [render(request, customer) for customer in page.items],
            "has_more": page.has_more,
            "next_cursor": page.next_cursor,
        }
    )


@docs(tags=["customers"], security=BEARER, summary="Register a customer", responses=_ERRORS)
@request_schema(CustomerCreateSchema)
@response_schema(CustomerSchema, 201)
async def create_customer(request: web.Request) -> web.Response:
    data = request[request_data_key]
    values = await request.app[pipeline_key].run(data, _context(request))
    customer = await request.app[repository_key].insert(new_customer(values))
    location = str(request.app.router["customer"].url_for(customer_id=customer["id"]))
    return json_response(render(request, customer), status=201, headers={"Location": location})


@docs(tags=["customers"], security=BEARER, summary="Get one customer", responses=_ERRORS)
@response_schema(CustomerSchema, 200)
async def get_customer(request: web.Request) -> web.Response:
    customer = await request.app[repository_key].get(request.match_info["customer_id"])
    if customer is None:
        raise CustomerNotFound()
    return json_response(render(request, customer))


@docs(
    tags=["customers"],
    security=BEARER,
    summary="Change some fields (their validators run again)",
    responses=_ERRORS,
)
@request_schema(CustomerPatchSchema)
@response_schema(CustomerSchema, 200)
async def patch_customer(request: web.Request) -> web.Response:
    customer_id = request.match_info["customer_id"]
    repository = request.app[repository_key]
    if await repository.get(customer_id) is None:  # 404 before spending validator calls
        raise CustomerNotFound()
    data = request[request_data_key]
    values = await request.app[pipeline_key].run(data, _context(request, customer_id))
    customer = await repository.update(customer_id, changes_from(values))
    if customer is None:  # deleted meanwhile
        raise CustomerNotFound()
    return json_response(render(request, customer))


@docs(tags=["customers"], security=BEARER, summary="Delete a customer", responses=_ERRORS)
async def delete_customer(request: web.Request) -> web.Response:
    if not await request.app[repository_key].delete(request.match_info["customer_id"]):
        raise CustomerNotFound()
    return web.Response(status=204)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/customers", list_customers, name="customers", allow_head=False)
    app.router.add_post("/api/v1/customers", create_customer)
    resource = app.router.add_resource("/api/v1/customers/{customer_id}", name="customer")
    resource.add_route("GET", get_customer)
    resource.add_route("PATCH", patch_customer)
    resource.add_route("DELETE", delete_customer)
