"""The rate-limit middleware end to end (in-process buckets): who pays, what they are told."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from service.api.ratelimit import client_address, trusted_networks
from service.auth.local_issuer import issue_local_token
from service.typedefs import settings_key, token_verifier_key
from tests.fakes import FakeClock

CUSTOMERS = "/api/v1/customers"


def limits(burst: int, rate: float = 0.001, **more: Any) -> dict[str, Any]:
    return {"ratelimit": {"enabled": True, "rate_per_s": rate, "burst": burst, **more}}


def bearer(client, subject: str) -> dict[str, str]:
    token = issue_local_token(client.app[settings_key], subject, ["customers:read"], [], 600)
    return {"Authorization": f"Bearer {token}"}


GARBAGE = {"Authorization": "Bearer not.a.token"}


async def test_over_the_burst_is_429_problem_with_retry_after_and_ratelimit_headers(make_client):
    client = await make_client(limits(3, rate=0.5))
    answers = [await client.get(CUSTOMERS) for _ in range(3)]
    assert [r.status for r in answers] == [200] * 3
    assert [r.headers["RateLimit-Remaining"] for r in answers] == ["2", "1", "0"]
    assert answers[0].headers["RateLimit-Limit"] == "3"
    assert answers[0].headers["RateLimit-Policy"] == "3;w=6"
    refused = await client.get(CUSTOMERS)
    assert refused.status == 429
    assert refused.content_type == "application/problem+json"
    body = await refused.json()
    assert body["status"] == 429 and body["title"] == "Too many requests"
    assert refused.headers["Retry-After"] == "2"  # a whole token at 0.5/s
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Reset"] == "6"


async def test_the_bucket_refills_with_time(make_client, clock: FakeClock):
    client = await make_client(limits(1, rate=1.0), clock=clock)
    assert (await client.get(CUSTOMERS)).status == 200
    assert (await client.get(CUSTOMERS)).status == 429
    clock.advance(1.0)
    assert (await client.get(CUSTOMERS)).status == 200


async def test_probes_docs_and_metrics_are_never_limited(make_client):
    client = await make_client(limits(1))
    for path in ("/health/live", "/health/ready", "/api/docs/openapi.json", "/metrics"):
        for _ in range(5):
            response = await client.get(path)
            assert response.status == 200, path
            assert "RateLimit-Limit" not in response.headers
    assert (await client.get(CUSTOMERS)).status == 200  # its one token is still there


async def test_each_subject_has_its_own_bucket(make_client):
    client = await make_client(limits(2))
    for _ in range(2):
        assert (await client.get(CUSTOMERS)).status == 200
    assert (await client.get(CUSTOMERS)).status == 429
    assert (await client.get(CUSTOMERS, headers=bearer(client, "someone-else"))).status == 200
    assert (await client.get(CUSTOMERS, headers=GARBAGE)).status == 401  # the address bucket


async def test_garbage_and_missing_tokens_pay_by_client_address(make_client):
    client = await make_client(limits(3), scopes=None)
    assert (await client.get(CUSTOMERS, headers=GARBAGE)).status == 401
    assert (await client.get(CUSTOMERS, headers={"Authorization": "Bearer x.y.z"})).status == 401
    assert (await client.get(CUSTOMERS)).status == 401
    refused = await client.get(CUSTOMERS, headers=GARBAGE)
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    # a caller with a valid token from the same address is not punished for them
    assert (await client.get(CUSTOMERS, headers=bearer(client, "tester"))).status == 200


async def test_unrouted_paths_are_limited_by_address(make_client):
    client = await make_client(limits(1), scopes=None)
    first = await client.get("/wp-login.php")
    assert first.status == 404 and first.headers["RateLimit-Remaining"] == "0"
    assert (await client.get("/.env")).status == 429


async def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(make_client):
    client = await make_client(limits(2), scopes=None)
    statuses = [
        (await client.get(CUSTOMERS, headers={**GARBAGE, "X-Forwarded-For": f"10.0.0.{i}"})).status
        for i in range(3)
    ]
    assert statuses == [401, 401, 429]

    behind_proxy = await make_client(limits(2, trusted_proxies=["127.0.0.1/32"]), scopes=None)
    for i in range(4):  # four clients, one request each: nobody is over
        headers = {**GARBAGE, "X-Forwarded-For": f"10.0.0.{i}"}
        assert (await behind_proxy.get(CUSTOMERS, headers=headers)).status == 401
    one_client = {**GARBAGE, "X-Forwarded-For": "10.0.0.9"}
    assert [(await behind_proxy.get(CUSTOMERS, headers=one_client)).status for _ in range(3)] == [
        401,
        401,
        429,
    ]


async def test_a_token_is_verified_once_per_request(make_client, monkeypatch):
    client = await make_client(limits(10))
    verifier = client.app[token_verifier_key]
    calls = 0
    original = verifier.authenticate

    async def counted(header):
        nonlocal calls
        calls += 1
        return await original(header)

    monkeypatch.setattr(verifier, "authenticate", counted)
    for _ in range(3):
        assert (await client.get(CUSTOMERS)).status == 200
        assert (await client.get(CUSTOMERS, headers=GARBAGE)).status == 401
    assert calls == 6


async def test_off_by_default(client):
    for _ in range(50):
        response = await client.get(CUSTOMERS)
        assert response.status == 200
    assert "RateLimit-Limit" not in response.headers


# --- the client address, unit by unit ---


def address(peer: str, forwarded: Sequence[str] = (), trusted: tuple[str, ...] = ()) -> str:
    transport = mock.Mock()
    transport.get_extra_info.return_value = (peer, 40000)
    headers = [("X-Forwarded-For", value) for value in forwarded]
    request = make_mocked_request("GET", "/", headers=headers, transport=transport)
    return client_address(request, trusted_networks(trusted))


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.7", ["1.2.3.4"], (), "203.0.113.7"),  # not a proxy: header ignored
        ("10.0.0.2", ["198.51.100.1"], ("10.0.0.0/8",), "198.51.100.1"),
        # the client may send its own X-Forwarded-For: only the hop the proxy added counts
        ("10.0.0.2", ["6.6.6.6, 198.51.100.1"], ("10.0.0.0/8",), "198.51.100.1"),
        ("10.0.0.2", ["6.6.6.6", "10.0.0.3, 198.51.100.1"], ("10.0.0.0/8",), "198.51.100.1"),
        # a chain of trusted proxies is walked through
        ("10.0.0.2", ["198.51.100.1, 10.0.0.5"], ("10.0.0.0/8",), "198.51.100.1"),
        # garbage where an address should be: the last address known stands
        ("10.0.0.2", ["not-an-ip"], ("10.0.0.0/8",), "10.0.0.2"),
        # IPv6 by /64: one subscriber's block is one bucket
        ("2001:db8:1:2:aaaa::1", [], (), "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", [], (), "192.0.2.1"),
    ],
)
def test_client_address(peer, forwarded, trusted, expected) -> None:
    assert address(peer, forwarded, trusted) == expected
