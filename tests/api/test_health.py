"""`/health/ready`: every dependency with its state and latency, probed at once with a
timeout each; degraded (200) while a fallback serves, unavailable (503) when the API cannot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from service.api.health import PROBE_TIMEOUT_S, PROVIDER_PROBE_EVERY_S
from service.app import create_app
from service.auth.local_issuer import issue_local_token, local_issuer_from


async def ready(client: Any, status: int) -> dict[str, Any]:
    """The readiness body, checked against the OpenAPI document's `Ready` schema."""
    response = await client.get("/health/ready")
    assert response.status == status
    body: dict[str, Any] = await response.json()
    document = await (await client.get("/api/docs/openapi.json")).json()
    registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    schema = {"$ref": "urn:openapi#/components/schemas/Ready"}
    Draft202012Validator(schema, registry=registry).validate(body)
    return body


def states(body: dict[str, Any]) -> dict[str, str]:
    return {name: check["state"] for name, check in body["checks"].items()}


async def test_every_dependency_is_listed_with_its_latency(client):
    body = await ready(client, 200)
    assert body["status"] == "ok"
    assert set(body["checks"]) == {
        "storage",
        "policy_engine",
        "jwks",
        "cep:viacep",
        "cep:offline",
        "cep_cache",
    }
    for check in body["checks"].values():
        assert check["state"] == "ok" and "detail" not in check
        assert 0 <= check["latency_ms"] < PROBE_TIMEOUT_S * 1000


async def test_an_online_provider_down_is_degraded_while_the_offline_one_answers(client, viacep):
    viacep.down = True
    body = await ready(client, 200)
    assert body["status"] == "degraded"
    assert body["checks"]["cep:viacep"] == {
        "state": "down",
        "latency_ms": body["checks"]["cep:viacep"]["latency_ms"],
        "detail": "ProviderError",
    }
    assert states(body)["cep:offline"] == "ok"


async def test_a_hung_provider_costs_the_probe_timeout_not_the_readiness(client, viacep):
    viacep.slow = True  # holds every request until released
    body = await ready(client, 200)
    check = body["checks"]["cep:viacep"]
    assert check["state"] == "down"
    assert check["detail"] == f"no answer within {PROBE_TIMEOUT_S:g}s"
    assert check["latency_ms"] >= PROBE_TIMEOUT_S * 1000
    assert states(body)["storage"] == "ok"  # probed at the same time, not after
    viacep.release()


async def test_a_provider_is_probed_at_most_every_30_seconds(aiohttp_client, make_settings, viacep):
    """/health/ready is public: calling it must not turn into calls to ViaCEP."""
    now = [1000.0]
    client = await aiohttp_client(create_app(make_settings(), clock=lambda: now[0]))
    for _ in range(5):
        assert states(await ready(client, 200))["cep:viacep"] == "ok"
    assert viacep.calls == 1
    viacep.down = True
    assert states(await ready(client, 200))["cep:viacep"] == "ok"  # the kept outcome
    now[0] += PROVIDER_PROBE_EVERY_S
    for _ in range(3):
        body = await ready(client, 200)
        assert body["checks"]["cep:viacep"]["detail"] == "ProviderError"
    assert viacep.calls == 2


async def test_every_cep_provider_down_is_unavailable(make_client, viacep):
    client = await make_client({"cep": {"providers": ["viacep"]}})
    viacep.down = True
    body = await ready(client, 503)
    assert body["status"] == "unavailable"
    assert states(body)["cep:viacep"] == "down"


async def test_a_provider_behind_an_open_breaker_is_down_without_a_call(make_client, viacep):
    client = await make_client(
        {"breaker": {"failures": 1, "cooldown_s": 600}, "cep": {"cache": {"ttl_found_s": 0}}}
    )
    viacep.down = True
    customer = {
        "name": "Maria",
        "email": "m@example.com",
        "phone": "11912345678",
        "cep": "01001000",
        "cpf": "52998224725",
    }
    assert (await client.post("/api/v1/customers", json=customer)).status == 201
    calls = viacep.calls
    body = await ready(client, 200)
    assert viacep.calls == calls
    assert body["checks"]["cep:viacep"]["detail"] == "BreakerOpen"
    assert body["breakers"]["cep:viacep"] == "open"
    assert body["status"] == "degraded"


async def test_redis_stores_are_listed_and_their_outage_only_degrades(make_client):
    dead = "redis://127.0.0.1:1/0"  # nothing listens: refused at once
    client = await make_client(
        {"cep": {"cache": {"url": dead}}, "ratelimit": {"enabled": True, "url": dead}}
    )
    body = await ready(client, 200)
    assert body["status"] == "degraded"
    assert states(body)["cep_cache"] == "down"
    assert states(body)["ratelimit_store"] == "down"


async def test_redis_stores_that_answer_are_ok(make_client, redis_url):
    client = await make_client(
        {"cep": {"cache": {"url": redis_url}}, "ratelimit": {"enabled": True, "url": redis_url}}
    )
    body = await ready(client, 200)
    assert states(body)["cep_cache"] == states(body)["ratelimit_store"] == "ok"
    assert body["status"] == "ok"


@pytest.fixture
async def file_jwks(make_settings, aiohttp_client, tmp_path: Path):
    """An app whose keys come from a JWKS file, and a token those keys verify."""
    issuer_settings = make_settings()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(local_issuer_from(issuer_settings).jwks()))
    token = issue_local_token(issuer_settings, "tester", ["customers:read"], [], 600)
    settings = make_settings({"auth": {"local_issuer": {"enabled": False}, "jwks_url": str(path)}})
    client = await aiohttp_client(create_app(settings))
    return client, path, token


async def test_jwks_unreadable_without_keys_is_unavailable_with_keys_degraded(file_jwks):
    client, path, token = file_jwks
    assert states(await ready(client, 200))["jwks"] == "ok"
    keys = path.read_text()
    path.unlink()
    body = await ready(client, 503)  # no key was ever loaded: no token can be verified
    assert body["status"] == "unavailable" and states(body)["jwks"] == "down"
    path.write_text(keys)
    response = await client.get("/api/v1/customers", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200  # the keys are loaded now
    path.unlink()
    body = await ready(client, 200)
    assert body["status"] == "degraded" and states(body)["jwks"] == "degraded"
