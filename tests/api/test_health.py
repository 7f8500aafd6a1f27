"""`/health/ready`: every dependency with its state and latency, probed at once with a
timeout each; degraded (200) while a fallback serves, unavailable (503) when the API cannot."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from service.api.health import MAX_AGE_S, PROBE_TIMEOUT_S, PROVIDER_PROBE_EVERY_S, REFRESH_EVERY_S
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
        "storage_writes",
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
    now = [1000.0]
    client = await aiohttp_client(create_app(settings, clock=lambda: now[0]))
    return client, path, token, now


async def test_jwks_unreadable_without_keys_is_unavailable_with_keys_degraded(file_jwks):
    client, path, token, now = file_jwks
    assert states(await ready(client, 200))["jwks"] == "ok"
    keys = path.read_text()
    path.unlink()
    now[0] += MAX_AGE_S  # the snapshot is too old to answer
    body = await ready(client, 503)  # no key was ever loaded: no token can be verified
    assert body["status"] == "unavailable" and states(body)["jwks"] == "down"
    path.write_text(keys)
    response = await client.get("/api/v1/customers", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200  # the keys are loaded now
    path.unlink()
    now[0] += MAX_AGE_S
    body = await ready(client, 200)
    assert body["status"] == "degraded" and states(body)["jwks"] == "degraded"


# --- finding #2 of the third review: every anonymous probe fetched the JWKS ---


class CountingIdp:
    """A JWKS endpoint that counts fetches and how many are in flight at once."""

    def __init__(self, jwks: dict[str, Any], delay_s: float = 0.0) -> None:
        self.jwks, self.delay_s = jwks, delay_s
        self.fetches = self.in_flight = self.most_in_flight = 0

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        self.fetches += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            return web.json_response(self.jwks)
        finally:
            self.in_flight -= 1


async def _idp_app(make_settings, aiohttp_client, aiohttp_server, delay_s: float):
    from aiohttp import web

    idp = CountingIdp(local_issuer_from(make_settings()).jwks(), delay_s)
    idp_app = web.Application()
    idp_app.router.add_get("/jwks", idp.handle)
    server = await aiohttp_server(idp_app)
    settings = make_settings(
        {"auth": {"local_issuer": {"enabled": False}, "jwks_url": str(server.make_url("/jwks"))}}
    )
    now = [1000.0]
    client = await aiohttp_client(create_app(settings, clock=lambda: now[0]))
    return client, idp, now


@pytest.mark.parametrize("probes", [1, 20, 80])
async def test_concurrent_probes_make_one_round_of_checks(
    make_settings, aiohttp_client, aiohttp_server, probes
):
    client, idp, now = await _idp_app(make_settings, aiohttp_client, aiohttp_server, 0.05)
    answers = await asyncio.gather(*(client.get("/health/ready") for _ in range(probes)))
    assert {answer.status for answer in answers} == {200}
    assert idp.fetches == 1
    for _ in range(probes):  # and one after the other, inside the refresh interval
        assert (await client.get("/health/ready")).status == 200
    assert idp.fetches == 1


async def test_a_slow_idp_never_sees_more_than_one_probe_fetch(
    make_settings, aiohttp_client, aiohttp_server
):
    """With a slow IdP the review saw up to 960 abandoned fetches in flight."""
    client, idp, now = await _idp_app(make_settings, aiohttp_client, aiohttp_server, 0.3)
    for _ in range(3):
        tasks = [asyncio.ensure_future(client.get("/health/ready")) for _ in range(40)]
        await asyncio.sleep(0.05)
        for task in tasks[:20]:  # half the probes give up
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        now[0] += MAX_AGE_S
    assert idp.most_in_flight == 1
    assert idp.fetches <= 3


async def test_an_aging_snapshot_is_answered_while_one_refresh_runs_behind_it(
    make_settings, aiohttp_client, aiohttp_server
):
    client, idp, now = await _idp_app(make_settings, aiohttp_client, aiohttp_server, 0.0)
    assert (await client.get("/health/ready")).status == 200
    idp.delay_s = 30.0  # the refresh hangs at the IdP (the probe timeout ends it)
    now[0] += REFRESH_EVERY_S  # old enough to refresh, young enough to answer
    for _ in range(20):  # the old snapshot answers: nobody waits for the hanging IdP
        assert states(await ready(client, 200))["jwks"] == "ok"
    now[0] += MAX_AGE_S - REFRESH_EVERY_S  # now too old: this probe waits for the refresh
    body = await ready(client, 503)  # no token verified yet, so no key is held
    assert body["checks"]["jwks"]["detail"] == f"no answer within {PROBE_TIMEOUT_S:g}s"
    assert idp.fetches == 2  # one refresh for twenty-one probes
