"""`GET /api/v1/events` end to end: what each change announces, paging and resuming,
retention, authorization, and that no personal value ever leaves through an event."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.events.model import FIELD_NAMES, is_event_id
from service.events.types import EVENT_TYPES
from service.storage.base import now
from service.typedefs import repository_key
from tests.conftest import ALL_SCOPES
from tests.events.helpers import event, put_events
from tests.factories import VALID_BODY as MARIA
from tests.factories import customer_body as customer
from tests.factories import make_cpf

SCOPES = (*ALL_SCOPES, "events:read")
EVENT_KEYS = {"id", "type", "customer_id", "fields", "occurred_at"}


async def feed(client: Any, limit: int = 100, after: str | None = None) -> list[dict[str, Any]]:
    """Every event after `after`, paging `limit` at a time."""
    events: list[dict[str, Any]] = []
    while True:
        params = {"limit": str(limit), **({"after": after} if after else {})}
        response = await client.get("/api/v1/events", params=params)
        assert response.status == 200, await response.text()
        page = await response.json()
        events += page["data"]
        after = page["next_cursor"]
        if not page["has_more"]:
            return events


async def test_each_change_announces_its_event_with_the_fields_it_set(make_client: Any) -> None:
    client = await make_client(scopes=SCOPES)
    created = await (await client.post("/api/v1/customers", json=MARIA)).json()
    patched = await client.patch(f"/api/v1/customers/{created['id']}", json={"email": "n@x.com"})
    assert patched.status == 200
    address = await client.patch(f"/api/v1/customers/{created['id']}", json={"number": "7"})
    assert address.status == 200
    assert (await client.delete(f"/api/v1/customers/{created['id']}")).status == 204
    events = await feed(client)
    assert [(e["type"], e["customer_id"]) for e in events] == [
        ("customer.created", created["id"]),
        ("customer.updated", created["id"]),
        ("customer.updated", created["id"]),
        ("customer.closed", created["id"]),
    ]
    assert set(events[0]["fields"]) >= {"name", "email", "phone", "cpf", "address"}
    assert events[1]["fields"] == ["email"]
    assert events[2]["fields"] == ["address"]
    for item in events:
        assert set(item) == EVENT_KEYS and is_event_id(item["id"])
        assert item["occurred_at"].endswith("Z")
    assert len({item["id"] for item in events}) == len(events)


async def test_paging_one_at_a_time_sees_the_same_list_and_the_cursor_holds_at_the_end(
    make_client: Any,
) -> None:
    client = await make_client(scopes=SCOPES)
    for i in range(5):
        assert (await client.post("/api/v1/customers", json=customer(i))).status == 201
    whole = await feed(client)
    assert await feed(client, limit=1) == whole and len(whole) == 5
    last = await (await client.get("/api/v1/events", params={"limit": "5"})).json()
    assert last["has_more"] is False
    empty = await (await client.get("/api/v1/events", params={"after": last["next_cursor"]})).json()
    assert empty == {"data": [], "has_more": False, "next_cursor": last["next_cursor"]}
    assert (await client.post("/api/v1/customers", json=customer(5))).status == 201
    (newer,) = await feed(client, after=last["next_cursor"])
    assert newer["type"] == "customer.created" and newer["id"] not in {e["id"] for e in whole}


async def test_a_consumer_resuming_after_every_page_during_concurrent_writes_misses_nothing(
    make_client: Any,
) -> None:
    client = await make_client(scopes=SCOPES)
    written: list[str] = []

    async def writer(first: int) -> None:
        for i in range(first, first + 6):
            response = await client.post("/api/v1/customers", json=customer(i))
            assert response.status == 201
            written.append((await response.json())["id"])
            await client.patch(f"/api/v1/customers/{written[-1]}", json={"number": str(i)})

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    writers = asyncio.gather(*(writer(first) for first in (0, 6, 12, 18)))
    while not writers.done() or cursor is None:
        params = {"limit": "3", **({"after": cursor} if cursor else {})}
        page = await (await client.get("/api/v1/events", params=params)).json()
        seen += page["data"]
        cursor = page["next_cursor"]
        await asyncio.sleep(0)
    await writers
    seen += await feed(client, limit=3, after=cursor)
    assert seen == await feed(client)  # the same list, in the same order
    assert len({e["id"] for e in seen}) == len(seen) == 48
    assert sorted(e["customer_id"] for e in seen if e["type"] == "customer.created") == sorted(
        written
    )


async def test_the_feed_survives_a_restart(make_client: Any, make_settings: Any) -> None:
    first = await make_client(scopes=SCOPES)
    for i in range(3):
        assert (await first.post("/api/v1/customers", json=customer(i))).status == 201
    before = await feed(first)
    middle = (await (await first.get("/api/v1/events", params={"limit": "1"})).json())[
        "next_cursor"
    ]
    await first.close()
    second = await make_client(scopes=SCOPES)
    assert await feed(second) == before
    assert await feed(second, after=middle) == before[1:]


async def test_a_cursor_before_the_retention_sweep_is_410_cursor_expired(
    make_client: Any,
) -> None:
    client = await make_client(scopes=SCOPES)
    repository = client.server.app[repository_key]
    await put_events(repository, [event(at=now() - timedelta(days=31)) for _ in range(3)])
    first = await (await client.get("/api/v1/events", params={"limit": "1"})).json()
    await put_events(repository, [event()])
    assert await repository.events.sweep(before=now() - timedelta(days=30), limit=100) == 3
    gone = await client.get("/api/v1/events", params={"after": first["next_cursor"]})
    assert gone.status == 410 and gone.content_type == "application/problem+json"
    body = await gone.json()
    assert body["code"] == "cursor_expired" and "retention" in body["detail"]
    (kept,) = await feed(client)  # without `after`: from the oldest kept
    assert kept["fields"] == ["email"]


async def test_the_feed_needs_events_read_which_the_integration_role_grants(
    make_client: Any,
) -> None:
    denied = await make_client(scopes=ALL_SCOPES)
    assert (await denied.get("/api/v1/events")).status == 403
    integration = await make_client(scopes=(), roles=("integration",))
    assert (await integration.get("/api/v1/events")).status == 200
    assert (await integration.get("/api/v1/customers")).status == 403


async def test_bad_queries_are_problems(make_client: Any) -> None:
    client = await make_client(scopes=SCOPES)
    for params, field in (
        ({"after": "nope"}, "after"),
        ({"after": "A" * 12}, "after"),  # well-formed, but no cursor the feed handed out
        ({"limit": "0"}, "limit"),
        ({"cursor": "x"}, "cursor"),
    ):
        response = await client.get("/api/v1/events", params=params)
        assert response.status == 422, params
        assert response.content_type == "application/problem+json"
        assert [e["field"] for e in (await response.json())["errors"]] == [field], params


PEOPLE = st.fixed_dictionaries(
    {
        "name": st.text(st.characters(categories=["L"]), min_size=2, max_size=40),
        "local": st.from_regex(r"[a-z][a-z0-9]{2,12}", fullmatch=True),
        "cpf_base": st.integers(100_000_000, 999_999_999),
        "number": st.from_regex(r"[1-9][0-9]{0,4}", fullmatch=True),
        "complement": st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20),
        "phone": st.sampled_from(["(11) 91234-5678", "(21) 2345-6789", "+55 31 99876-5432"]),
    }
)


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [str(value)]


@pytest.fixture
async def client_with_events(make_client: Callable[..., Any]) -> Any:
    """One client for every example (hypothesis runs them in one test)."""
    return await make_client(scopes=SCOPES)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(person=PEOPLE)
async def test_no_event_holds_a_personal_value(
    client_with_events: Any, person: dict[str, Any]
) -> None:
    client = client_with_events
    body = {
        "name": person["name"],
        "email": f"{person['local']}@example.com",
        "phone": person["phone"],
        "cep": "01001-000",
        "cpf": make_cpf(person["cpf_base"]),
        "number": person["number"],
        "complement": person["complement"],
    }
    created = await client.post("/api/v1/customers", json=body)
    if created.status != 201:  # a CPF or email hypothesis drew twice
        return
    stored = await created.json()
    changed = {"name": person["name"][::-1], "complement": person["complement"] + "x"}
    assert (await client.patch(f"/api/v1/customers/{stored['id']}", json=changed)).status == 200
    not_personal = {stored["id"], stored["created_at"], stored["updated_at"], "None", *FIELD_NAMES}
    personal = set(_leaves({**stored, **changed})) - not_personal
    events = [e for e in await feed(client) if e["customer_id"] == stored["id"]]
    assert [e["type"] for e in events] == ["customer.created", "customer.updated"]
    for item in events:
        assert set(item) == EVENT_KEYS and item["type"] in EVENT_TYPES
        assert set(item["fields"]) <= FIELD_NAMES
        assert not personal & set(_leaves(item)), item
    assert (await client.delete(f"/api/v1/customers/{stored['id']}")).status == 204


async def test_openapi_documents_the_feed_and_the_webhook_body_as_sent(make_client: Any) -> None:
    """The feed's page and the `webhooks` object (OpenAPI 3.1) validate what is served."""
    from jsonschema import Draft202012Validator
    from openapi_spec_validator import validate
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    client = await make_client(scopes=SCOPES)
    document = await (await client.get("/api/docs/openapi.json")).json()
    validate(document)
    registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )

    def check(pointer: str, body: Any) -> None:
        Draft202012Validator({"$ref": f"urn:openapi#{pointer}"}, registry=registry).validate(body)

    hook = document["webhooks"]["customerEvent"]["post"]
    headers = {p["name"] for p in hook["parameters"] if p["in"] == "header"}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert set(hook["responses"]) == {"2XX", "default"}
    assert (await client.post("/api/v1/customers", json=MARIA)).status == 201
    page = await (await client.get("/api/v1/events")).json()
    check("/paths/~1api~1v1~1events/get/responses/200/content/application~1json/schema", page)
    check(
        "/webhooks/customerEvent/post/requestBody/content/application~1json/schema", page["data"][0]
    )
    parameters = {p["name"]: p for p in document["paths"]["/api/v1/events"]["get"]["parameters"]}
    assert set(parameters) == {"after", "limit"}
    assert parameters["limit"]["schema"] == {
        "type": "integer",
        "default": 20,
        "minimum": 1,
        "maximum": 100,
    }
    assert re.fullmatch(parameters["after"]["schema"]["pattern"], page["next_cursor"])


LIFECYCLE_SCOPES = (
    *SCOPES,
    "customers:lifecycle",
    "customers:anonymize",
    "customers:restricted",
)


async def test_the_lifecycle_of_one_customer_is_announced_in_order(make_client: Any) -> None:
    client = await make_client(scopes=LIFECYCLE_SCOPES)
    created = await (await client.post("/api/v1/customers", json=MARIA)).json()
    path = f"/api/v1/customers/{created['id']}"
    assert (await client.patch(path, json={"email": "new@example.com"})).status == 200
    for step in ("block", "unblock"):
        assert (await client.post(f"{path}/{step}")).status == 200, step
    assert (await client.delete(path)).status == 204
    assert (await client.post(f"{path}/reopen")).status == 200
    assert (await client.post(f"{path}/anonymize")).status == 200
    events = [e for e in await feed(client) if e["customer_id"] == created["id"]]
    assert [e["type"] for e in events] == [
        "customer.created",
        "customer.updated",
        "customer.blocked",
        "customer.unblocked",
        "customer.closed",
        "customer.reopened",
        "customer.anonymized",
    ]
    assert events[1]["fields"] == ["email"]
    assert len({e["id"] for e in events}) == 7
    for item in events:
        assert set(item) == EVENT_KEYS and set(item["fields"]) <= FIELD_NAMES
