"""Traffic moves every metric family of `/metrics`, with bounded label values."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.auth.local_issuer import issue_local_token
from service.typedefs import settings_key
from tests.authz.fake_opa import FakeOpa
from tests.factories import VALID_BODY
from tests.fakes import MISSING_CEP

CUSTOMERS = "/api/v1/customers"


async def scrape(client: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics by (name, labels)."""
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_traffic_moves_every_family(make_client, viacep):
    client = await make_client({"ratelimit": {"enabled": True, "rate_per_s": 0.001, "burst": 8}})
    before = await scrape(client)
    settings = client.app[settings_key]
    read_only = issue_local_token(settings, "reader", ["customers:read"], [], 600)

    assert (await client.post(CUSTOMERS, json=VALID_BODY)).status == 201  # CEP: cache miss, viacep
    other = {**VALID_BODY, "email": "joao@example.com", "cpf": "111.444.777-35"}
    assert (await client.post(CUSTOMERS, json=other)).status == 201  # CEP: cache hit
    bad = {**VALID_BODY, "cpf": "111.111.111-11", "email": "not-an-email", "cep": MISSING_CEP}
    assert (await client.post(CUSTOMERS, json=bad)).status == 422
    denied = await client.post(
        CUSTOMERS, json=VALID_BODY, headers={"Authorization": f"Bearer {read_only}"}
    )
    assert denied.status == 403
    statuses = [(await client.get(CUSTOMERS)).status for _ in range(6)]
    assert statuses[-1] == 429  # the caller's bucket of 8 is empty

    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("policy_decisions_total", engine="embedded", result="allow") >= 3
    assert moved("policy_decisions_total", engine="embedded", result="deny") == 1
    assert moved("policy_decision_duration_seconds_count", engine="embedded") >= 4
    assert moved("cep_lookups_total", provider="viacep", outcome="found") == 1
    assert moved("cep_lookups_total", provider="viacep", outcome="not_found") == 1
    assert moved("cep_cache_requests_total", result="miss") == 2
    assert moved("cep_cache_requests_total", result="hit") == 1
    assert moved("validator_rejections_total", validator="cpf", code="invalid") == 1
    assert moved("validator_rejections_total", validator="email", code="invalid") == 1
    assert moved("validator_rejections_total", validator="cep", code="not_found") == 1
    assert moved("rate_limited_requests_total", caller="subject") >= 1
    assert moved("jwks_refreshes_total", outcome="ok") == 1  # the first token loads the keys
    assert moved("http_requests_total", method="GET", route=CUSTOMERS, status="429") >= 1
    # The default collectors, on the app's registry.
    assert value(after, "process_cpu_seconds_total") > 0
    assert any(name == "python_info" for name, _ in after)
    assert any(name == "python_gc_collections_total" for name, _ in after)


async def test_cep_provider_errors_and_open_breakers_are_counted(make_client, viacep):
    client = await make_client(
        {"breaker": {"failures": 1, "cooldown_s": 600}, "cep": {"cache": {"ttl_found_s": 0}}}
    )
    viacep.down = True
    for email, cpf in (("a@example.com", "52998224725"), ("b@example.com", "11144477735")):
        response = await client.post(CUSTOMERS, json={**VALID_BODY, "email": email, "cpf": cpf})
        assert response.status == 201  # the offline directory answers
    samples = await scrape(client)
    assert value(samples, "cep_lookups_total", provider="viacep", outcome="error") == 1
    assert (
        value(samples, "cep_lookups_total", provider="viacep", outcome="skipped_open_breaker") == 1
    )
    assert value(samples, "cep_lookups_total", provider="offline", outcome="found") == 2


@pytest.fixture
async def opa(aiohttp_server) -> FakeOpa:
    fake = FakeOpa()
    server = await aiohttp_server(fake.make_app())
    fake.url = str(server.make_url("/")).rstrip("/")
    return fake


async def test_policy_engine_errors_are_counted_per_engine(make_client, opa):
    client = await make_client({"authz": {"engine": "opa", "opa_url": opa.url}})
    assert (await client.get(CUSTOMERS)).status == 200
    opa.down = True
    assert (await client.get(CUSTOMERS)).status == 503
    samples = await scrape(client)
    assert value(samples, "policy_decisions_total", engine="opa", result="allow") == 1
    assert value(samples, "policy_decisions_total", engine="opa", result="error") == 1
    assert value(samples, "policy_decision_duration_seconds_count", engine="opa") == 2


async def test_label_values_are_bounded(make_client):
    client = await make_client()
    for n in range(5):
        await client.get(f"{CUSTOMERS}/{n:024x}")
        await client.get(f"/no/such/{n}")
    text = await (await client.get("/metrics")).text()
    routes = set(re.findall(r'route="([^"]*)"', text))
    assert routes <= {CUSTOMERS, CUSTOMERS + "/{customer_id}", "unmatched", "/metrics"}
    assert "tester" not in text  # the subject never is a label
