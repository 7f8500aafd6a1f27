"""The `/api/v1/customers` handlers: parse (schemas) -> domain (pipeline, repository) -> render."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from service.api import idempotency
from service.api.journal import change_of, record_reads, recorded
from service.api.openapi import json_content, no_content, operation
from service.api.render import json_response
from service.api.schemas import (
    CUSTOMER_OR_ID,
    BlockSchema,
    CustomerCreateSchema,
    CustomerPageSchema,
    CustomerPatchSchema,
    CustomerSchema,
    ListQuerySchema,
)
from service.audit.chain import PERSONAL_FIELDS
from service.authz.masking import mask_customer
from service.customers import lifecycle
from service.customers.canonical import canonical_cpf
from service.customers.errors import CustomerNotFound
from service.customers.lifecycle import Transition
from service.customers.model import Customer, changes_from, new_customer
from service.customers.view import public_view
from service.typedefs import (
    cep_resolver_key,
    decision_key,
    pipeline_key,
    principal_key,
    repository_key,
    request_data_key,
    settings_key,
)
from service.validation.base import ValidationContext

# OpenAPI links: where a created customer's id goes next (schemathesis follows them too).
_CREATED_LINKS = {
    name: {"operationId": name, "parameters": {"customer_id": "$response.body#/id"}}
    for name in ("getCustomer", "patchCustomer", "deleteCustomer")
}


def render(request: web.Request, customer: Mapping[str, Any]) -> dict[str, Any]:
    """The public view, minus what the policy decision says this caller may not see."""
    return mask_customer(public_view(customer), request[decision_key].masked_fields)


def visible(request: web.Request, customer: Mapping[str, Any]) -> bool:
    """Whether the policy lets this caller see a customer in its status."""
    return customer["status"] in request[decision_key].visible_statuses


async def visible_customer(request: web.Request) -> Customer:
    """The customer of the path, if its status is one the caller may see; 404 otherwise (a
    status the policy hides is not even admitted to exist)."""
    customer = await request.app[repository_key].get(request.match_info["customer_id"])
    if customer is None or not visible(request, customer):
        raise CustomerNotFound()
    return customer


def _context(request: web.Request, current: Mapping[str, Any] | None = None) -> ValidationContext:
    return ValidationContext(
        customers=request.app[repository_key],
        # remote CEP lookups are paid from this caller's budget (service/cep/resolver.py)
        cep=request.app[cep_resolver_key].for_caller(request[principal_key].subject),
        customer_id=current["id"] if current else None,
        current=current,
    )


@operation(
    "listCustomers",
    tag="customers",
    summary="List customers (creation order, cursor pagination)",
    query=ListQuerySchema,
    responses={200: json_content(CustomerPageSchema, "A page of customers")},
    errors=(400, 422),
)
async def list_customers(request: web.Request) -> web.Response:
    query = request[request_data_key]
    filters: dict[str, str] = {name: query[name] for name in ("email", "cpf") if name in query}
    if "cpf" in filters:
        # "529.982.247-25" and "52998224725" name one person; anything else matches nobody.
        filters["cpf"] = canonical_cpf(filters["cpf"]) or filters["cpf"]
    page = await request.app[repository_key].page(
        limit=query["limit"],
        cursor=query.get("cursor"),
        filters=filters,
        statuses=request[decision_key].visible_statuses,
    )
    record_reads(request, page.items)
    return json_response(
        {
            "data": [render(request, customer) for customer in page.items],
            "has_more": page.has_more,
            "next_cursor": page.next_cursor,
        }
    )


async def _created(request: web.Request, customer: Mapping[str, Any]) -> web.Response:
    # The route's template with the id put in: an id is lower-case hex, nothing to quote
    # (`url_for` builds and quotes a yarl URL: ~3 % of a registration's loop time).
    location = request.app.router["customer"].canonical.replace("{customer_id}", customer["id"])
    return json_response(render(request, customer), status=201, headers={"Location": location})


async def _recover_created(request: web.Request, customer_id: str) -> web.Response | None:
    """The 201 of a POST whose customer is stored but whose answer was never kept."""
    customer = await request.app[repository_key].get(customer_id)
    return None if customer is None else await _created(request, customer)


@operation(
    "createCustomer",
    tag="customers",
    summary="Register a customer",
    body=CustomerCreateSchema,
    headers=[idempotency.OPENAPI_PARAMETER],
    responses={
        201: json_content(
            CUSTOMER_OR_ID,
            "Registered (only the id for a caller without `customers:read`; with "
            "`Idempotent-Replayed: true`, the first answer to this key)",
            headers={"Location": {"required": True, "schema": {"type": "string"}}},
            links=_CREATED_LINKS,
        )
    },
    errors=(400, 409, 413, 415, 422),
)
@idempotency.idempotent(recover=_recover_created)
async def create_customer(request: web.Request) -> web.Response:
    data = request[request_data_key]
    values = await request.app[pipeline_key].run(data, _context(request))
    fresh, change = new_customer(values), change_of(request, "create", PERSONAL_FIELDS)
    if idempotency.PLANNED_ID in request:  # the id the Idempotency-Key claim chose
        fresh["id"] = request[idempotency.PLANNED_ID]
    customer = await request.app[repository_key].insert(fresh, change)
    recorded(request, change)
    return await _created(request, customer)


@operation(
    "getCustomer",
    tag="customers",
    summary="Get one customer",
    responses={200: json_content(CustomerSchema, "The customer")},
    errors=(404,),
)
async def get_customer(request: web.Request) -> web.Response:
    customer = await visible_customer(request)
    record_reads(request, (customer,))
    return json_response(render(request, customer))


@operation(
    "patchCustomer",
    tag="customers",
    summary="Change some fields (their validators run again)",
    body=CustomerPatchSchema,
    responses={
        200: json_content(
            CUSTOMER_OR_ID, "The changed customer (only the id without `customers:read`)"
        )
    },
    errors=(400, 404, 409, 413, 415, 422),
)
async def patch_customer(request: web.Request) -> web.Response:
    customer_id = request.match_info["customer_id"]
    repository = request.app[repository_key]
    # 404 or 409 before spending validator calls; the update checks the status again
    current = await visible_customer(request)
    lifecycle.UPDATE.check(current["status"])
    data = request[request_data_key]
    values = await request.app[pipeline_key].run(data, _context(request, current))
    changes = changes_from(values)
    change = change_of(request, "update", changes)
    customer = await repository.update(customer_id, changes, change)
    if customer is None:  # deleted meanwhile
        raise CustomerNotFound()
    recorded(request, change)
    return json_response(render(request, customer))


@operation(
    "deleteCustomer",
    tag="customers",
    summary="End the relationship: the customer is closed, kept for `retention.closed_days`, "
    "then anonymized (with `closed_days: 0`, anonymized at once)",
    responses={204: no_content("Closed (or anonymized)")},
    errors=(404, 409),
)
async def delete_customer(request: web.Request) -> web.Response:
    immediate = request.app[settings_key].retention.closed_days == 0
    await _transition(request, lifecycle.CLOSE_AND_ANONYMIZE if immediate else lifecycle.CLOSE)
    return web.Response(status=204)


async def _transition(
    request: web.Request, transition: Transition, reason: str | None = None
) -> Customer:
    await visible_customer(request)
    change = change_of(request, transition.action)  # the repository names the fields
    customer = await request.app[repository_key].transition(
        request.match_info["customer_id"],
        transition,
        change,
        closed_days=request.app[settings_key].retention.closed_days,
        reason=reason,
    )
    if customer is None:
        raise CustomerNotFound()
    recorded(request, change)
    return customer


_ACTION_SUMMARIES = {
    "block": "Block: processing suspended, data kept (LGPD art. 5 XIII, 18 IV); no change "
    "until unblocked",
    "unblock": "Unblock: back to active",
    "reopen": "Reopen a closed customer: back to active, retention deadline cleared",
    "anonymize": "Anonymize now: personal data erased for good; id, status, timestamps, city "
    "and state kept; the email and CPF are free again",
}


def _action_handler(transition: Transition) -> Any:
    """The handler of `POST /customers/{id}/<action>`: 200 with the customer after it."""
    name = transition.action

    @operation(
        f"{name}Customer",
        tag="lifecycle",
        summary=_ACTION_SUMMARIES[name],
        body=BlockSchema if transition is lifecycle.BLOCK else None,
        body_required=False,
        responses={
            200: json_content(
                CUSTOMER_OR_ID,
                "The customer after the action (only the id without `customers:read`)",
            )
        },
        errors=(400, 404, 409, 413, 415, 422) if transition is lifecycle.BLOCK else (404, 409),
    )
    async def act(request: web.Request) -> web.Response:
        reason = request[request_data_key].get("reason")
        return json_response(render(request, await _transition(request, transition, reason)))

    act.__name__ = f"{name}_customer"
    return act


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/customers", list_customers, name="customers", allow_head=False)
    app.router.add_post("/api/v1/customers", create_customer)
    resource = app.router.add_resource("/api/v1/customers/{customer_id}", name="customer")
    resource.add_route("GET", get_customer)
    resource.add_route("PATCH", patch_customer)
    resource.add_route("DELETE", delete_customer)
    for name, transition in lifecycle.ACTIONS.items():
        app.router.add_post(
            f"/api/v1/customers/{{customer_id}}/{name}", _action_handler(transition), name=name
        )
