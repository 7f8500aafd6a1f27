"""Authentication and authorization as API clients meet them: an external IdP's JWTs
(JWKS file) or the local issuer, and the default Rego policy."""

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest
from aiohttp import web

from service.api.health import MAX_AGE_S
from service.app import create_app
from service.auth.local_issuer import issue_local_token
from tests.auth.jwt_helpers import (
    AUDIENCE,
    ISSUER,
    claims,
    ec_key,
    hs256_with_public_key,
    jwks,
    public_jwk,
    rsa_key,
    sign,
    tamper,
    unsigned_token,
)
from tests.authz.fake_opa import FakeOpa
from tests.factories import VALID_BODY, assert_problem

POLICIES = Path(__file__).resolve().parents[2] / "policies"
IDP_KEY = rsa_key()


@pytest.fixture
def idp(tmp_path):
    """An external IdP: its JWKS is a file; the local issuer is off."""
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(public_jwk(IDP_KEY, kid="idp-1"))))
    return {
        "auth": {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "jwks_url": str(keys),
            "local_issuer": {"enabled": False},
        }
    }


@pytest.fixture
async def idp_client(make_client, idp):
    return await make_client(idp, scopes=None)


def idp_token(**overrides):
    return sign(claims(**overrides), IDP_KEY, kid="idp-1")


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def refused_headers(case):
    """Headers for each refused case, built when the test runs (tokens are time-bound)."""
    now = int(time.time())
    read = "customers:read"
    tokens = {
        "garbage": lambda: "not.a.jwt",
        "expired": lambda: idp_token(scope=read, exp=now - 3600, iat=now - 7200),
        "wrong aud": lambda: idp_token(scope=read, aud="another-api"),
        "wrong iss": lambda: idp_token(scope=read, iss="https://evil.test"),
        "no exp": lambda: idp_token(scope=read, exp=None),
        "future nbf": lambda: idp_token(scope=read, nbf=now + 3600),
        "alg none": lambda: unsigned_token(claims(scope=read), kid="idp-1"),
        "hs256 with the public key": lambda: hs256_with_public_key(
            claims(scope=read), IDP_KEY, kid="idp-1"
        ),
        "tampered payload": lambda: tamper(
            idp_token(scope=read), scope="customers:read customers:write customers:pii"
        ),
        "right kid, foreign key": lambda: sign(claims(scope=read), rsa_key(), kid="idp-1"),
        "foreign ec key": lambda: sign(claims(scope=read), ec_key(), kid="idp-1"),
    }
    if case == "no token":
        return {}
    if case == "basic auth":
        return {"Authorization": "Basic dXNlcjpwYXNz"}
    return auth(tokens[case]())


REFUSED = [
    "no token",
    "basic auth",
    "garbage",
    "expired",
    "wrong aud",
    "wrong iss",
    "no exp",
    "future nbf",
    "alg none",
    "hs256 with the public key",
    "tampered payload",
    "right kid, foreign key",
    "foreign ec key",
]


async def test_a_valid_idp_token_is_accepted(idp_client):
    """The control for the refusals below: same client, same key, valid claims."""
    response = await idp_client.get(
        "/api/v1/customers", headers=auth(idp_token(scope="customers:read"))
    )
    assert response.status == 200


@pytest.mark.parametrize("case", REFUSED)
async def test_bad_credentials_are_401_with_a_bearer_challenge(idp_client, case):
    headers = refused_headers(case)
    response = await idp_client.get("/api/v1/customers", headers=headers)
    await assert_problem(response, 401)
    challenge = response.headers["WWW-Authenticate"]
    if case == "no token":
        assert challenge == "Bearer"  # RFC 6750 §3.1: no error code when no credentials
    else:
        assert challenge == 'Bearer error="invalid_token"'


async def test_a_token_in_the_query_string_is_not_a_token(idp_client):
    token = idp_token(scope="customers:read")
    response = await idp_client.get(f"/api/v1/customers?access_token={token}")
    await assert_problem(response, 401)


async def test_read_scope_reads_but_does_not_write(idp_client):
    headers = auth(idp_token(scope="customers:read"))
    assert (await idp_client.get("/api/v1/customers", headers=headers)).status == 200
    response = await idp_client.post("/api/v1/customers", json=VALID_BODY, headers=headers)
    await assert_problem(response, 403)
    assert "customers:write" in (await response.json())["detail"]


async def test_no_customer_scope_is_403(idp_client):
    response = await idp_client.get(
        "/api/v1/customers", headers=auth(idp_token(scope="openid profile"))
    )
    await assert_problem(response, 403)


async def test_delete_needs_the_delete_scope(idp_client):
    writer = auth(idp_token(scope="customers:read customers:write"))
    created = await (
        await idp_client.post("/api/v1/customers", json=VALID_BODY, headers=writer)
    ).json()
    url = f"/api/v1/customers/{created['id']}"
    await assert_problem(await idp_client.delete(url, headers=writer), 403)
    deleter = auth(idp_token(scope="customers:delete"))
    assert (await idp_client.delete(url, headers=deleter)).status == 204


async def test_without_pii_scope_cpf_and_phone_never_appear_in_clear(idp_client):
    writer = auth(idp_token(scope="customers:read customers:write"))
    created_response = await idp_client.post("/api/v1/customers", json=VALID_BODY, headers=writer)
    created = await created_response.json()
    url = f"/api/v1/customers/{created['id']}"
    patched_response = await idp_client.patch(url, json={"name": "Maria S."}, headers=writer)
    bodies = [
        await created_response.text(),
        await patched_response.text(),
        await (await idp_client.get(url, headers=writer)).text(),
        await (await idp_client.get("/api/v1/customers", headers=writer)).text(),
    ]
    for body in bodies:
        assert "52998224725" not in body and "529.982.247-25" not in body
        assert "912345678" not in body and "91234-5678" not in body
    single = json.loads(bodies[2])
    assert single["cpf"] == "***.982.247-**"
    assert single["phone"].endswith("5678") and "*" in single["phone"]
    assert single["email"] == "maria.silva@example.com"  # only the policy's fields are masked

    dpo = auth(idp_token(scope="customers:read customers:pii"))
    clear = await (await idp_client.get(url, headers=dpo)).json()
    assert (clear["cpf"], clear["phone"]) == ("52998224725", "+5511912345678")


async def test_roles_map_to_scopes_through_policy_data(make_client):
    support = await make_client(scopes=[], roles=["support"])
    assert (await support.get("/api/v1/customers")).status == 200
    await assert_problem(await support.post("/api/v1/customers", json=VALID_BODY), 403)
    onboarding = await make_client(scopes=[], roles=["onboarding"])
    assert (await onboarding.post("/api/v1/customers", json=VALID_BODY)).status == 201


async def test_editing_policy_data_applies_without_a_restart(make_client, tmp_path):
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    client = await make_client(
        {"authz": {"policies_dir": str(policies)}}, scopes=[], roles=["support"]
    )
    await assert_problem(await client.post("/api/v1/customers", json=VALID_BODY), 403)

    data_file = policies / "customers" / "authz" / "data.json"
    data = json.loads(data_file.read_text())
    data["role_scopes"]["support"].append("customers:write")
    data_file.write_text(json.dumps(data))

    # Files are checked at most every 0.5 s (EmbeddedPolicyEngine.check_interval_s).
    for _ in range(50):
        status = (await client.post("/api/v1/customers", json=VALID_BODY)).status
        if status != 403:
            break
        await asyncio.sleep(0.1)
    assert status == 201


async def test_public_routes_need_no_token(idp_client):
    for path in ("/health/live", "/health/ready", "/api/docs", "/api/docs/openapi.json"):
        assert (await idp_client.get(path)).status == 200, path


async def test_a_route_no_policy_rule_covers_is_denied(aiohttp_client, make_settings):
    settings = make_settings()
    app = create_app(settings)

    async def secret(request: web.Request) -> web.Response:
        return web.json_response({"secret": True})

    app.router.add_get("/api/v1/secret", secret)
    app.router.add_get("/internal/stats", secret)
    scopes = ["customers:read", "customers:write", "customers:delete", "customers:pii"]
    token = issue_local_token(settings, "tester", scopes, [], 600)
    client = await aiohttp_client(app)
    for path in ("/api/v1/secret", "/internal/stats"):
        await assert_problem(await client.get(path), 401)
        await assert_problem(await client.get(path, headers=auth(token)), 403)


@pytest.fixture
async def opa(aiohttp_server):
    fake = FakeOpa()
    server = await aiohttp_server(fake.make_app())
    fake.url = str(server.make_url("/")).rstrip("/")
    return fake


async def test_opa_sidecar_decides_and_sees_claims_not_the_token(make_client, opa):
    client = await make_client(
        {"authz": {"engine": "opa", "opa_url": opa.url}}, scopes=["customers:read"]
    )
    assert (await client.get("/api/v1/customers")).status == 200
    await assert_problem(await client.post("/api/v1/customers", json=VALID_BODY), 403)
    assert (await client.get(f"/api/v1/customers/{'AB' * 12}")).status == 404
    sent = opa.inputs[0]
    assert sent["method"] == "GET" and sent["path"] == ["api", "v1", "customers"]
    assert sent["route"] == "/api/v1/customers"
    one = opa.inputs[-1]  # the route template, the id canonical in path and resource
    assert one["route"] == "/api/v1/customers/{customer_id}"
    assert one["path"][-1] == one["resource"]["id"] == "ab" * 12
    assert sent["principal"]["sub"] == "tester"
    assert sent["principal"]["scopes"] == ["customers:read"]
    assert "eyJ" not in json.dumps(opa.inputs)  # no raw JWT travels to the policy engine


@pytest.mark.parametrize("failure", ["down", "garbage", "slow", "undefined"])
async def test_a_failing_policy_engine_never_allows_and_stores_nothing(make_client, opa, failure):
    client = await make_client({"authz": {"engine": "opa", "opa_url": opa.url, "timeout_s": 0.2}})
    setattr(opa, failure, True)
    response = await client.post("/api/v1/customers", json=VALID_BODY)
    if failure == "undefined":  # OPA's `{}` for an undefined rule is a deny
        await assert_problem(response, 403)
    else:
        await assert_problem(response, 503)
    setattr(opa, failure, False)
    listed = await (await client.get("/api/v1/customers")).json()
    assert listed["data"] == []


async def test_readiness_names_a_policy_engine_that_is_down(make_client, opa, clock):
    client = await make_client({"authz": {"engine": "opa", "opa_url": opa.url}}, clock=clock)
    assert (await client.get("/health/ready")).status == 200
    opa.down = True
    clock.advance(MAX_AGE_S)  # past the snapshot's age
    ready = await client.get("/health/ready")
    assert ready.status == 503
    checks = (await ready.json())["checks"]
    assert checks["storage"]["state"] == "ok"
    assert checks["policy_engine"]["state"] == "down"


async def test_an_unreachable_policy_engine_is_503(make_client):
    client = await make_client({"authz": {"engine": "opa", "opa_url": "http://127.0.0.1:1"}})
    await assert_problem(await client.get("/api/v1/customers"), 503)
