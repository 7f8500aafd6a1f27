"""The lifecycle over HTTP: actions, who may run them, who sees what, what erasure leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.auth.local_issuer import issue_local_token
from service.customers import lifecycle
from service.typedefs import repository_key, settings_key
from tests.factories import VALID_BODY, change, customer_body

READ = ("customers:read", "customers:pii")
WRITE = ("customers:read", "customers:write")
Client = TestClient[Any, Any]


class Callers:
    """Tokens of several callers for one app."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def headers(self, scopes: Sequence[str] = (), roles: Sequence[str] = ()) -> dict[str, str]:
        settings = self.client.app[settings_key]
        token = issue_local_token(settings, "caller", list(scopes), list(roles), 600)
        return {"Authorization": f"Bearer {token}"}

    @property
    def dpo(self) -> dict[str, str]:
        return self.headers(roles=["dpo"])

    async def create(self, body: dict[str, Any] = VALID_BODY) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/customers", json=body, headers=self.headers(WRITE)
        )
        assert response.status == 201, await response.text()
        created: dict[str, Any] = await response.json()
        return created

    async def act(
        self, customer_id: str, action: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> Any:
        url = f"/api/v1/customers/{customer_id}/{action}"
        return await self.client.post(url, headers=headers or self.dpo, **kw)


@pytest.fixture
async def callers(make_client: Callable[..., Any]) -> Callers:
    return Callers(await make_client(scopes=None))


async def status_of(callers: Callers, customer_id: str) -> str:
    response = await callers.client.get(f"/api/v1/customers/{customer_id}", headers=callers.dpo)
    assert response.status == 200
    status: str = (await response.json())["status"]
    return status


async def assert_conflict(response: Any, code: str) -> None:
    assert response.status == 409
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["code"] == code
    assert body["type"].endswith(code.replace("_", "-"))


async def test_the_whole_lifecycle_as_a_dpo_and_as_a_reader(callers: Callers) -> None:
    client, reader = callers.client, callers.headers(READ)
    created = await callers.create()
    url = f"/api/v1/customers/{created['id']}"
    assert created["status"] == "active"

    blocked = await callers.act(created["id"], "block", json={"reason": "fraud review #12"})
    assert blocked.status == 200
    body = await blocked.json()
    assert (body["status"], body["blocked_reason"]) == ("blocked", "fraud review #12")
    # hidden from a reader everywhere: by id, in pages, in filters
    assert (await client.get(url, headers=reader)).status == 404
    page = await (await client.get("/api/v1/customers", headers=reader)).json()
    assert page["data"] == []
    query = {"email": VALID_BODY["email"]}
    found = await client.get("/api/v1/customers", params=query, headers=reader)
    assert (await found.json())["data"] == []
    dpo_found = await client.get("/api/v1/customers", params=query, headers=callers.dpo)
    assert [c["id"] for c in (await dpo_found.json())["data"]] == [created["id"]]
    # a blocked customer takes no change; a writer who may not see it gets 404
    writer = callers.headers([*WRITE, "customers:restricted"])
    await assert_conflict(
        await client.patch(url, json={"name": "X"}, headers=writer), "customer_blocked"
    )
    assert (
        await client.patch(url, json={"name": "X"}, headers=callers.headers(WRITE))
    ).status == 404
    await assert_conflict(await client.delete(url, headers=callers.dpo), "customer_blocked")
    await assert_conflict(await callers.act(created["id"], "reopen"), "customer_blocked")

    assert (await callers.act(created["id"], "unblock")).status == 200
    await assert_conflict(await callers.act(created["id"], "unblock"), "invalid_status")
    assert (await client.get(url, headers=reader)).status == 200

    assert (await client.delete(url, headers=callers.dpo)).status == 204
    closed = await (await client.get(url, headers=callers.dpo)).json()
    assert closed["status"] == "closed"
    closed_at = datetime.fromisoformat(closed["closed_at"])
    assert datetime.fromisoformat(closed["purge_after"]) - closed_at == timedelta(days=3653)
    assert (await client.get(url, headers=reader)).status == 404
    await assert_conflict(await client.delete(url, headers=callers.dpo), "invalid_status")
    await assert_conflict(
        await client.patch(url, json={"name": "X"}, headers=writer), "invalid_status"
    )

    reopened = await (await callers.act(created["id"], "reopen")).json()
    assert reopened["status"] == "active"
    assert reopened["closed_at"] is reopened["purge_after"] is None
    assert (await client.get(url, headers=reader)).status == 200

    gone = await callers.act(created["id"], "anonymize")
    assert gone.status == 200
    erased = await gone.json()
    assert erased["status"] == "anonymized"
    assert {k: erased[k] for k in ("name", "email", "phone", "cpf")} == dict.fromkeys(
        ("name", "email", "phone", "cpf")
    )
    assert erased["address"]["city"] == "São Paulo" and erased["address"]["state"] == "SP"
    assert erased["address"]["cep"] is erased["address"]["number"] is None
    assert erased["anonymized_at"] and erased["closed_at"] and erased["purge_after"]
    for action in ("reopen", "anonymize", "block", "unblock"):
        await assert_conflict(await callers.act(created["id"], action), "invalid_status")
    # the email and the CPF are free: the same person registers again as a new customer
    again = await callers.create()
    assert again["id"] != created["id"]


@pytest.mark.parametrize(
    ("action", "needs"),
    [
        ("block", "customers:lifecycle"),
        ("unblock", "customers:lifecycle"),
        ("reopen", "customers:lifecycle"),
        ("anonymize", "customers:anonymize"),
    ],
)
async def test_each_action_needs_its_scope(callers: Callers, action: str, needs: str) -> None:
    created = await callers.create()
    every_other = [*READ, "customers:write", "customers:delete", "customers:restricted"]
    denied = await callers.act(created["id"], action, callers.headers(every_other))
    assert denied.status == 403
    assert await status_of(callers, created["id"]) == "active"
    allowed = await callers.act(created["id"], action, callers.headers([needs]))
    assert allowed.status in (200, 409)
    if allowed.status == 200:  # a caller without customers:read sees only the id
        assert await allowed.json() == {"id": created["id"]}


@pytest.mark.parametrize("action", ["block", "unblock", "reopen", "anonymize"])
@pytest.mark.parametrize("customer_id", ["0" * 24, "nope", "0123456789abcdef0123456g"])
async def test_an_unknown_customer_is_404(callers: Callers, action: str, customer_id: str) -> None:
    response = await callers.act(customer_id, action)
    assert response.status == 404
    assert response.content_type == "application/problem+json"


async def test_actions_on_a_status_the_caller_may_not_see_are_404(callers: Callers) -> None:
    created = await callers.create()
    assert (await callers.act(created["id"], "block")).status == 200
    lifecycle_only = callers.headers(["customers:lifecycle", "customers:anonymize"])
    for action in ("unblock", "anonymize", "block"):
        assert (await callers.act(created["id"], action, lifecycle_only)).status == 404
    assert await status_of(callers, created["id"]) == "blocked"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"reason": "x" * 501}, 422),
        ({"reason": ""}, 422),
        ({"reason": "line\nbreak"}, 422),
        ({"reason": "\u200b"}, 422),
        ({"reason": 7}, 422),
        ({"why": "x"}, 422),
        ([], 400),
    ],
)
async def test_a_bad_block_reason_is_refused_and_changes_nothing(
    callers: Callers, body: Any, status: int
) -> None:
    created = await callers.create()
    response = await callers.act(created["id"], "block", json=body)
    assert response.status == status
    assert response.content_type == "application/problem+json"
    assert await status_of(callers, created["id"]) == "active"


@pytest.mark.parametrize(
    "body", [None, {}, {"reason": "  complaint to ANPD  "}, {"reason": "é" * 500}]
)
async def test_a_block_reason_is_optional(callers: Callers, body: Any) -> None:
    created = await callers.create()
    response = await callers.act(created["id"], "block", **({} if body is None else {"json": body}))
    assert response.status == 200
    shown = (await response.json()).get("blocked_reason")
    assert shown == (body.get("reason", "").strip() or None if body else None)


async def test_with_closed_days_zero_delete_anonymizes_at_once(
    make_client: Callable[..., Any],
) -> None:
    callers = Callers(await make_client({"retention": {"closed_days": 0}}, scopes=None))
    created = await callers.create()
    url = f"/api/v1/customers/{created['id']}"
    assert (await callers.client.delete(url, headers=callers.dpo)).status == 204
    erased = await (await callers.client.get(url, headers=callers.dpo)).json()
    assert erased["status"] == "anonymized" and erased["cpf"] is None
    assert (await callers.create())["id"] != created["id"]


async def test_an_idempotent_retry_after_anonymization_replays_nothing(callers: Callers) -> None:
    """The kept first answer held the clear record: it is deleted with the customer."""
    headers = {**callers.headers(WRITE), "Idempotency-Key": "k-1"}
    first = await callers.client.post("/api/v1/customers", json=VALID_BODY, headers=headers)
    created = await first.json()
    replay = await callers.client.post("/api/v1/customers", json=VALID_BODY, headers=headers)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert (await callers.act(created["id"], "anonymize")).status == 200
    retry = await callers.client.post("/api/v1/customers", json=VALID_BODY, headers=headers)
    assert "Idempotent-Replayed" not in retry.headers
    assert retry.status == 201 and (await retry.json())["id"] != created["id"]


async def test_two_dpos_at_once_end_in_one_consistent_state(callers: Callers) -> None:
    created = await callers.create()
    actions = ["block", "anonymize", "unblock", "block"] * 5
    responses = await asyncio.gather(*(callers.act(created["id"], a) for a in actions))
    assert {r.status for r in responses} <= {200, 409}
    final = await status_of(callers, created["id"])
    assert final in ("active", "blocked", "anonymized")
    assert sum(r.status == 200 for r in responses) >= 1


async def test_the_retention_sweep_anonymizes_what_is_past_its_deadline(
    make_client: Callable[..., Any],
) -> None:
    callers = Callers(await make_client({"retention": {"sweep_interval_s": 1}}, scopes=None))
    due = await callers.create()
    kept = await callers.create(customer_body(1))
    repository = callers.client.app[repository_key]
    await repository.transition(
        due["id"], lifecycle.CLOSE, change(lifecycle.CLOSE.action), closed_days=0
    )
    await repository.transition(
        kept["id"], lifecycle.CLOSE, change(lifecycle.CLOSE.action), closed_days=30
    )
    for _ in range(50):
        if await status_of(callers, due["id"]) == "anonymized":
            break
        await asyncio.sleep(0.1)
    assert await status_of(callers, due["id"]) == "anonymized"
    assert await status_of(callers, kept["id"]) == "closed"


async def test_the_trail_and_the_export_of_a_hidden_customer_are_404(callers: Callers) -> None:
    """Audit and export follow the same visibility: a closed customer is 404 to a caller
    without customers:restricted, and its trail shows every transition to the DPO."""
    created = await callers.create()
    url = f"/api/v1/customers/{created['id']}"
    auditor = callers.headers(["customers:audit", "customers:export", "customers:read"])
    assert (await callers.client.get(f"{url}/audit", headers=auditor)).status == 200
    assert (await callers.act(created["id"], "block", json={"reason": "review"})).status == 200
    assert (await callers.act(created["id"], "anonymize")).status == 200
    for path in ("audit", "export"):
        hidden = await callers.client.get(f"{url}/{path}", headers=auditor)
        assert hidden.status == 404, path
    trail = await callers.client.get(f"{url}/audit", headers=callers.dpo)
    entries = (await trail.json())["data"]
    assert [e["action"] for e in entries][:3] == ["anonymize", "block", "create"]
    assert "review" not in repr(entries)  # field names, never values
    export = await (await callers.client.get(f"{url}/export", headers=callers.dpo)).json()
    assert export["customer"]["status"] == "anonymized"
    assert export["customer"]["cpf"] is None and export["customer"]["email"] is None


async def test_the_openapi_document_describes_the_lifecycle(callers: Callers) -> None:
    document = await (await callers.client.get("/api/docs/openapi.json")).json()
    schemas = document["components"]["schemas"]
    customer_schema = schemas["Customer"]["properties"]
    assert customer_schema["status"]["enum"] == list(lifecycle.STATUSES)
    for name in ("closed_at", "purge_after", "anonymized_at", "blocked_reason"):
        assert "null" in customer_schema[name]["type"]
    for name in ("name", "email", "phone", "cpf"):  # null once anonymized
        assert customer_schema[name]["type"] == ["string", "null"]
    assert schemas["Block"]["properties"]["reason"]["maxLength"] == 500
    paths = document["paths"]
    for action in ("block", "unblock", "reopen", "anonymize"):
        operation = paths[f"/api/v1/customers/{{customer_id}}/{action}"]["post"]
        assert operation["operationId"] == f"{action}Customer"
        conflict = operation["responses"]["409"]["description"]
        assert "customer_blocked" in conflict and "invalid_status" in conflict
    delete = paths["/api/v1/customers/{customer_id}"]["delete"]
    assert "closed" in delete["summary"] and "409" in delete["responses"]
