"""Authorization holes: identity filters, write-only callers, ids in another case, two
Authorization headers."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from service.auth.local_issuer import issue_local_token
from service.typedefs import settings_key
from tests.factories import VALID_BODY, assert_problem

READ = ["customers:read"]


def token_for(client, scopes, sub="tester"):
    return issue_local_token(client.app[settings_key], sub, list(scopes), [], 600)


def auth(client, scopes):
    return {"Authorization": f"Bearer {token_for(client, scopes)}"}


@pytest.mark.parametrize(
    "query",
    [
        {"cpf": "52998224725"},
        {"cpf": "529.982.247-25"},
        {"cpf": "529982"},
        {"email": "maria@example.com"},
        {"email": "MARIA@EXAMPLE.COM"},
        {"email": "x", "limit": "1"},
        {"cpf": "1", "email": "x@example.com"},
    ],
)
async def test_identity_filters_need_pii(client, stored_id, query):
    response = await client.get("/api/v1/customers", params=query, headers=auth(client, READ))
    problem = await assert_problem(response, 403)
    assert "customers:pii" in problem["detail"]


@pytest.mark.parametrize(
    "scopes", [READ + ["customers:pii"], ["customers:read", "customers:pii", "x"]]
)
async def test_identity_filters_answer_with_pii(client, stored_id, scopes):
    response = await client.get(
        "/api/v1/customers", params={"cpf": "52998224725"}, headers=auth(client, scopes)
    )
    assert response.status == 200
    assert [c["id"] for c in (await response.json())["data"]] == [stored_id]


async def test_paging_needs_only_read(client, stored_id):
    response = await client.get(
        "/api/v1/customers", params={"limit": "1"}, headers=auth(client, READ)
    )
    assert response.status == 200


@pytest.mark.parametrize("scopes", [["customers:write"], ["customers:write", "customers:pii"]])
async def test_write_only_patch_answers_without_the_record(client, stored_id, scopes):
    for body in ({}, {"name": "Maria Souza"}):
        response = await client.patch(
            f"/api/v1/customers/{stored_id}", json=body, headers=auth(client, scopes)
        )
        assert response.status == 200
        assert await response.json() == {"id": stored_id}
    stored = await (await client.get(f"/api/v1/customers/{stored_id}")).json()
    assert stored["name"] == "Maria Souza"


async def test_write_only_post_answers_with_location_and_id_only(client):
    response = await client.post(
        "/api/v1/customers", json=VALID_BODY, headers=auth(client, ["customers:write"])
    )
    assert response.status == 201
    body = await response.json()
    assert body == {"id": body["id"]}
    assert response.headers["Location"].endswith(body["id"])


async def test_write_only_caller_cannot_read(client, stored_id):
    response = await client.get(
        f"/api/v1/customers/{stored_id}", headers=auth(client, ["customers:write"])
    )
    await assert_problem(response, 403)


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_id_in_upper_case_is_the_same_customer(client, stored_id, method):
    kwargs: dict[str, Any] = {"json": {}} if method == "PATCH" else {}
    response = await client.request(method, f"/api/v1/customers/{stored_id.upper()}", **kwargs)
    assert response.status in (200, 204)
    if method != "DELETE":
        assert (await response.json())["id"] == stored_id


async def test_policy_sees_the_canonical_id(client, stored_id, monkeypatch):
    from service.typedefs import policy_engine_key

    engine = client.app[policy_engine_key]
    seen = []
    decide = engine.decide

    async def spy(document):
        seen.append(document)
        return await decide(document)

    monkeypatch.setattr(engine, "decide", spy)
    await client.get(f"/api/v1/customers/{stored_id.upper()}?limit=1")
    assert seen[-1]["resource"]["id"] == stored_id
    assert seen[-1]["path"][-1] == stored_id
    assert seen[-1]["query"] == ["limit"]


@pytest.mark.parametrize(
    "values",
    [
        ("{good}", "{good}"),
        ("{good}", "{bad}"),
        ("{bad}", "{good}"),
        ("{good}", ""),
        ("{good}", "Basic eA=="),
    ],
    ids=["same-twice", "good-then-bad", "bad-then-good", "good-then-empty", "good-then-basic"],
)
async def test_two_authorization_headers_are_refused(make_client, values):
    client = await make_client(scopes=None)
    good = f"Bearer {token_for(client, READ)}"
    bad = f"Bearer {token_for(client, [])}"
    headers = CIMultiDict(
        ("Authorization", value.replace("{good}", good).replace("{bad}", bad)) for value in values
    )
    response = await client.get("/api/v1/customers", headers=headers)
    await assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
