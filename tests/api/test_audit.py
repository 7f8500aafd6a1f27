"""The audit trail and the data-subject export over HTTP: what is recorded for each change
and read, who may read the trail, and what the export holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.auth.local_issuer import issue_local_token
from service.settings import Settings
from service.typedefs import read_recorder_key, repository_key
from tests.factories import make_cpf

MARIA = {
    "name": "Maria da Silva",
    "email": "maria@example.com",
    "phone": "(11) 91234-5678",
    "cep": "01001-000",
    "cpf": "529.982.247-25",
    "number": "100",
}
PII = ["customers:read", "customers:write", "customers:pii"]
Client = TestClient[Any, Any]


def bearer(
    settings: Settings, sub: str, scopes: list[str], roles: Sequence[str] = ()
) -> dict[str, str]:
    token = issue_local_token(settings, sub, scopes, list(roles), 600)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


async def flush(client: Client) -> None:
    assert client.app is not None
    await client.app[read_recorder_key].flush()


async def trail(client: Client, settings: Settings, customer_id: str) -> list[dict[str, Any]]:
    await flush(client)
    response = await client.get(
        f"/api/v1/customers/{customer_id}/audit?limit=100",
        headers=bearer(settings, "dpo-1", [], ["dpo"]),
    )
    assert response.status == 200, await response.text()
    return list((await response.json())["data"])


async def create(
    client: Client, settings: Settings, sub: str = "onboarding-app", **extra: Any
) -> str:
    response = await client.post(
        "/api/v1/customers", json={**MARIA, **extra}, headers=bearer(settings, sub, PII)
    )
    assert response.status == 201, await response.text()
    return str((await response.json())["id"])


async def test_changes_and_clear_reads_are_recorded_newest_first(
    make_client: Callable[..., Any], settings: Settings
) -> None:
    client = await make_client()
    customer_id = await create(client, settings)
    patched = await client.patch(
        f"/api/v1/customers/{customer_id}",
        json={"name": "Maria S.", "number": "7"},
        headers={**bearer(settings, "support-7", PII), "X-Request-ID": "req-patch-1"},
    )
    assert patched.status == 200
    shown = await client.get(
        f"/api/v1/customers/{customer_id}", headers=bearer(settings, "support-7", PII)
    )
    assert shown.status == 200
    entries = await trail(client, settings, customer_id)
    assert [(e["action"], e["actor"], e["fields"]) for e in entries] == [
        ("read", "support-7", ["address", "cpf", "email", "name", "phone"]),
        ("update", "support-7", ["address", "name"]),
        ("create", "onboarding-app", ["address", "cpf", "email", "name", "phone"]),
    ]
    assert entries[1]["request_id"] == "req-patch-1"
    assert entries[0]["request_id"] == shown.headers["X-Request-ID"]  # the id the answer echoed
    assert [e["prev_hash"] for e in entries[:-1]] == [e["hash"] for e in entries[1:]]


@pytest.mark.parametrize(
    ("mode", "masked_read", "clear_read"),
    [
        ("pii", None, ["address", "cpf", "email", "name", "phone"]),
        ("all", ["address", "email", "name"], ["address", "cpf", "email", "name", "phone"]),
        ("none", None, None),
    ],
)
async def test_audit_reads_decides_which_reads_are_recorded(
    make_client: Callable[..., Any],
    make_settings: Callable[..., Settings],
    mode: str,
    masked_read: list[str] | None,
    clear_read: list[str] | None,
) -> None:
    settings = make_settings({"audit": {"reads": mode}})
    client = await make_client({"audit": {"reads": mode}})
    customer_id = await create(client, settings)
    url = f"/api/v1/customers/{customer_id}"
    assert (
        await client.get(url, headers=bearer(settings, "masked", ["customers:read"]))
    ).status == 200
    assert (await client.get(url, headers=bearer(settings, "clear", PII))).status == 200
    # a write-only caller is shown nothing but the id: never a read
    write_only = bearer(settings, "writer", ["customers:write"])
    assert (await client.patch(url, json={"number": "1"}, headers=write_only)).status == 200
    reads = {
        e["actor"]: e["fields"]
        for e in await trail(client, settings, customer_id)
        if e["action"] == "read"
    }
    assert reads.get("masked") == masked_read
    assert reads.get("clear") == clear_read
    assert "writer" not in reads


async def test_a_page_records_one_read_per_customer_shown(
    make_client: Callable[..., Any], settings: Settings
) -> None:
    client = await make_client()
    ids = [
        await create(
            client, settings, email=f"c{i}@example.com", cpf=make_cpf(100_000_000 + 7919 * i)
        )
        for i in range(3)
    ]
    page = await client.get("/api/v1/customers?limit=2", headers=bearer(settings, "lister", PII))
    assert page.status == 200
    await flush(client)
    by_actor = await client.get(
        "/api/v1/audit?actor=lister", headers=bearer(settings, "dpo-1", ["customers:audit"])
    )
    assert by_actor.status == 200
    body = await by_actor.json()
    assert sorted(e["customer_id"] for e in body["data"]) == sorted(ids[:2])
    assert {e["action"] for e in body["data"]} == {"read"}


async def test_actor_pages_walk_newest_first_to_the_end(
    make_client: Callable[..., Any], settings: Settings
) -> None:
    client = await make_client()
    customer_id = await create(client, settings)
    reader = bearer(settings, "reader", PII)
    for _ in range(5):
        assert (await client.get(f"/api/v1/customers/{customer_id}", headers=reader)).status == 200
    await flush(client)
    dpo = bearer(settings, "dpo-1", ["customers:audit"])
    seen: list[dict[str, Any]] = []
    url = "/api/v1/audit?actor=reader&limit=2"
    while True:
        body = await (await client.get(url, headers=dpo)).json()
        seen += body["data"]
        if not body["has_more"]:
            break
        url = f"/api/v1/audit?actor=reader&limit=2&cursor={body['next_cursor']}"
    assert len(seen) == 5
    assert [e["at"] for e in seen] == sorted((e["at"] for e in seen), reverse=True)
    bad = await client.get("/api/v1/audit?actor=reader&cursor=AAAAAAAAAAA-", headers=dpo)
    assert bad.status in (400, 422)
    missing = await client.get("/api/v1/audit", headers=dpo)
    assert missing.status in (400, 422)


async def test_the_trail_and_the_export_need_their_scopes(
    make_client: Callable[..., Any], settings: Settings
) -> None:
    client = await make_client()
    customer_id = await create(client, settings)
    everything_else = bearer(settings, "x", [*PII, "customers:delete"])
    for url in (
        f"/api/v1/customers/{customer_id}/audit",
        f"/api/v1/customers/{customer_id}/export",
        "/api/v1/audit?actor=x",
    ):
        response = await client.get(url, headers=everything_else)
        assert response.status == 403, url
        assert response.content_type == "application/problem+json"
    audit_only = bearer(settings, "a", ["customers:audit"])
    assert (
        await client.get(f"/api/v1/customers/{customer_id}/export", headers=audit_only)
    ).status == 403
    export_only = bearer(settings, "e", ["customers:export"])
    assert (
        await client.get(f"/api/v1/customers/{customer_id}/audit", headers=export_only)
    ).status == 403


async def test_the_trail_of_a_deleted_customer_stays(
    make_client: Callable[..., Any], settings: Settings
) -> None:
    client = await make_client()
    customer_id = await create(client, settings)
    deleted = await client.delete(
        f"/api/v1/customers/{customer_id}", headers=bearer(settings, "closer", ["customers:delete"])
    )
    assert deleted.status == 204
    assert [e["action"] for e in await trail(client, settings, customer_id)] == ["close", "create"]
    unknown = await client.get(
        "/api/v1/customers/nope/audit", headers=bearer(settings, "dpo-1", ["customers:audit"])
    )
    assert unknown.status == 404


async def test_the_export_holds_the_clear_record_its_provenance_and_disclosures(
    make_client: Callable[..., Any], settings: Settings
) -> None:
    client = await make_client()
    customer_id = await create(client, settings)
    masked_reader = bearer(settings, "masked", ["customers:read"])
    await client.get(f"/api/v1/customers/{customer_id}", headers=bearer(settings, "clear", PII))
    await client.get(f"/api/v1/customers/{customer_id}", headers=masked_reader)
    await flush(client)
    exporter = bearer(settings, "dpo-1", ["customers:export"])  # no customers:pii: still clear
    response = await client.get(f"/api/v1/customers/{customer_id}/export", headers=exporter)
    assert response.status == 200
    export = await response.json()
    assert export["customer"]["cpf"] == "52998224725"
    assert export["customer"]["phone"] == "+5511912345678"
    assert export["customer"]["id"] == customer_id
    assert export["provenance"]["address"]["source"] == "viacep"
    assert "address.street" in export["provenance"]["address"]["fields"]
    assert {"name", "email", "phone", "cpf", "address.cep", "address.number"} <= set(
        export["provenance"]["supplied"]
    )
    assert [(e["action"], e["actor"]) for e in export["disclosures"]] == [
        ("export", "dpo-1"),
        ("read", "clear"),
        ("create", "onboarding-app"),
    ]
    assert export["generated_at"].endswith("Z")
    assert [e["action"] for e in await trail(client, settings, customer_id)][0] == "export"
    missing = await client.get("/api/v1/customers/" + "0" * 24 + "/export", headers=exporter)
    assert missing.status == 404


async def test_entries_written_buffer_depth_and_flush_latency_are_measured(
    make_client: Callable[..., Any], settings: Settings
) -> None:
    client = await make_client()
    customer_id = await create(client, settings)
    await client.get(f"/api/v1/customers/{customer_id}", headers=bearer(settings, "r", PII))
    before_flush = await (await client.get("/metrics")).text()
    assert "audit_read_buffer_depth 1.0" in before_flush
    await flush(client)
    text = await (await client.get("/metrics")).text()
    assert 'audit_entries_total{action="create"} 1.0' in text
    assert 'audit_entries_total{action="read"} 1.0' in text
    assert "audit_read_buffer_depth 0.0" in text
    assert "audit_flush_duration_seconds_count 1.0" in text


async def test_reads_are_flushed_within_a_second_without_being_asked(
    make_client: Callable[..., Any], settings: Settings
) -> None:
    import asyncio

    client = await make_client()
    customer_id = await create(client, settings)
    await client.get(f"/api/v1/customers/{customer_id}", headers=bearer(settings, "r", PII))
    store = client.server.app[repository_key].audit
    for _ in range(30):
        page = await store.page(limit=10, actor="r")
        if page.items:
            break
        await asyncio.sleep(0.1)
    assert [e["action"] for e in page.items] == ["read"]
