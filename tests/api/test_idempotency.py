"""Idempotency-Key on POST /api/v1/customers, end to end (SQLite; MongoDB when configured)."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from service.app import create_app
from service.auth.local_issuer import issue_local_token
from service.storage.idempotency import RESPONSE_TTL
from service.storage.pii import PiiKeyError
from service.typedefs import pii_codec_key
from tests.conftest import ALL_SCOPES
from tests.factories import VALID_BODY, assert_problem, customer_body
from tests.fakes import FakeClock


@pytest.fixture
async def api(aiohttp_client, make_settings):
    """(client without default auth, clock, headers(subject, key, scopes))."""
    settings = make_settings()
    # the app's wall clock, moved by the test (starts in the future: see the store tests)
    clock = FakeClock((datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)).timestamp())
    app = create_app(settings, wall_clock=clock.wall)
    client = await aiohttp_client(app)

    def headers(key=None, sub="tester", scopes=ALL_SCOPES):
        token = issue_local_token(settings, sub, list(scopes), [], 600)
        found = {"Authorization": f"Bearer {token}"}
        return found if key is None else {**found, "Idempotency-Key": key}

    return client, clock, headers


async def customers(client, headers):
    return (await (await client.get("/api/v1/customers", headers=headers())).json())["data"]


async def test_a_retry_replays_the_first_answer(api):
    client, _, headers = api
    first = await client.post("/api/v1/customers", json=VALID_BODY, headers=headers("k-1"))
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    retry = await client.post("/api/v1/customers", json=VALID_BODY, headers=headers("k-1"))
    assert retry.status == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.headers["Location"] == first.headers["Location"]
    assert retry.content_type == "application/json"
    assert await retry.json() == await first.json()
    assert len(await customers(client, headers)) == 1


async def test_the_same_body_in_another_key_order_is_the_same_request(api):
    client, _, headers = api
    await client.post("/api/v1/customers", json=VALID_BODY, headers=headers("k"))
    reordered = dict(reversed(list(VALID_BODY.items())))
    retry = await client.post("/api/v1/customers", json=reordered, headers=headers("k"))
    assert retry.headers.get("Idempotent-Replayed") == "true"


async def test_the_same_key_with_another_body_is_422_idempotency_key_reused(api):
    client, _, headers = api
    await client.post("/api/v1/customers", json=VALID_BODY, headers=headers("k"))
    other = await client.post("/api/v1/customers", json=customer_body(1), headers=headers("k"))
    await assert_problem(other, 422)
    assert (await other.json())["code"] == "idempotency_key_reused"
    assert len(await customers(client, headers)) == 1


async def test_a_retry_while_the_first_runs_is_409_retry_after_1(api, viacep):
    client, _, headers = api
    viacep.slow = True  # the first request waits on the CEP lookup
    first = asyncio.create_task(
        client.post("/api/v1/customers", json=VALID_BODY, headers=headers("k"))
    )
    while viacep.calls == 0:
        await asyncio.sleep(0.01)
    retry = await client.post("/api/v1/customers", json=VALID_BODY, headers=headers("k"))
    await assert_problem(retry, 409)
    assert retry.headers["Retry-After"] == "1"
    viacep.release()
    assert (await first).status == 201
    again = await client.post("/api/v1/customers", json=VALID_BODY, headers=headers("k"))
    assert again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("key", ["x" * 256, "", " ", "a\tb", "ключ", "café"])
async def test_a_key_that_is_too_long_empty_or_not_printable_is_400(api, key):
    client, _, headers = api
    response = await client.post("/api/v1/customers", json=VALID_BODY, headers=headers(key))
    await assert_problem(response, 400)
    assert await customers(client, headers) == []


async def test_a_key_of_255_characters_is_fine(api):
    client, _, headers = api
    response = await client.post("/api/v1/customers", json=VALID_BODY, headers=headers("x" * 255))
    assert response.status == 201


async def test_a_kept_answer_expires_after_24_hours(api):
    client, clock, headers = api
    first = await client.post("/api/v1/customers", json=VALID_BODY, headers=headers("k"))
    clock.advance((RESPONSE_TTL - timedelta(seconds=1)).total_seconds())
    kept = await client.post("/api/v1/customers", json=VALID_BODY, headers=headers("k"))
    assert kept.headers["Idempotent-Replayed"] == "true" and kept.status == 201
    clock.advance(1)
    fresh = await client.post("/api/v1/customers", json=VALID_BODY, headers=headers("k"))
    assert "Idempotent-Replayed" not in fresh.headers  # it ran again: the CPF is taken now
    await assert_problem(fresh, 422)
    assert [e["code"] for e in (await fresh.json())["errors"]] == ["already_exists"] * 2
    assert [c["id"] for c in await customers(client, headers)] == [(await first.json())["id"]]


async def test_keys_of_different_callers_never_meet(api):
    client, _, headers = api
    ana = await client.post("/api/v1/customers", json=VALID_BODY, headers=headers("k", sub="ana"))
    bob = await client.post(
        "/api/v1/customers", json=customer_body(1), headers=headers("k", sub="bob")
    )
    assert ana.status == bob.status == 201 and "Idempotent-Replayed" not in bob.headers
    masked = await client.post(  # same subject, fewer rights: never a replay of the wider answer
        "/api/v1/customers",
        json=VALID_BODY,
        headers=headers("k", sub="ana", scopes=["customers:write", "customers:read"]),
    )
    assert "Idempotent-Replayed" not in masked.headers
    assert len(await customers(client, headers)) == 2


async def test_fifty_parallel_posts_with_one_key_store_one_customer(api):
    client, _, headers = api
    sent = headers("same-key")
    responses = await asyncio.gather(
        *(client.post("/api/v1/customers", json=VALID_BODY, headers=sent) for _ in range(50))
    )
    statuses = [r.status for r in responses]
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status == 201]
    assert sum("Idempotent-Replayed" not in r.headers for r in created) == 1
    assert len({(await r.json())["id"] for r in created}) == 1
    assert len(await customers(client, headers)) == 1


async def test_a_503_is_not_kept_and_the_retry_runs_again(api, viacep):
    client, _, headers = api
    viacep.down = True
    body = {**VALID_BODY, "cep": "99999-999"}  # not in the offline directory either: 503
    await assert_problem(
        await client.post("/api/v1/customers", json=body, headers=headers("k")), 503
    )
    viacep.down = False
    viacep.addresses["99999999"] = {
        "street": "Rua",
        "neighborhood": "B",
        "city": "C",
        "state": "SP",
    }
    retry = await client.post("/api/v1/customers", json=body, headers=headers("k"))
    assert retry.status == 201 and "Idempotent-Replayed" not in retry.headers


async def test_a_validators_422_is_kept_but_a_malformed_body_never_claims_the_key(api):
    client, _, headers = api
    bad = {**VALID_BODY, "cpf": "529.982.247-24"}
    first = await client.post("/api/v1/customers", json=bad, headers=headers("k"))
    await assert_problem(first, 422)
    replay = await client.post("/api/v1/customers", json=bad, headers=headers("k"))
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content_type == "application/problem+json"
    assert await replay.json() == await first.json()
    sent = {**headers("k2"), "Content-Type": "application/json"}
    unparsed = await client.post("/api/v1/customers", data=b"{", headers=sent)
    await assert_problem(unparsed, 400)
    ok = await client.post("/api/v1/customers", json=VALID_BODY, headers=headers("k2"))
    assert ok.status == 201 and "Idempotent-Replayed" not in ok.headers


async def test_two_idempotency_key_headers_are_400(api):
    client, _, headers = api
    sent = [*headers().items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    await assert_problem(await client.post("/api/v1/customers", json=VALID_BODY, headers=sent), 400)


async def test_openapi_documents_the_header(api):
    client, _, _ = api
    spec = await (await client.get("/api/docs/openapi.json")).json()
    parameters = spec["paths"]["/api/v1/customers"]["post"]["parameters"]
    assert any(p["in"] == "header" and p["name"] == "Idempotency-Key" for p in parameters)


async def test_an_answer_sealed_with_a_retired_key_is_422_not_a_crash(api, monkeypatch):
    client, _, headers = api
    first = await client.post("/api/v1/customers", json=VALID_BODY, headers=headers("k-old"))
    assert first.status == 201
    codec = client.app[pii_codec_key]

    def retired(text, purpose):
        raise PiiKeyError("no PII key with id 'k-retired' is configured")

    monkeypatch.setattr(codec, "open", retired)  # as after `pii rotate` and removing the key
    retry = await client.post("/api/v1/customers", json=VALID_BODY, headers=headers("k-old"))
    await assert_problem(retry, 422)
    assert (await retry.json())["code"] == "idempotency_key_expired"
    monkeypatch.undo()
    assert len(await customers(client, headers)) == 1
