"""OpaPolicyEngine against a fake OPA on 127.0.0.1, and against a real OPA when OPA_URL is set
(started with `opa run -s policies/`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from service.authz.decision import Decision, PolicyEngineError
from service.authz.opa import OpaPolicyEngine
from service.errors import ServiceUnavailable
from tests.authz.fake_opa import FakeOpa
from tests.authz.inputs import route_of

ITEM = ["api", "v1", "customers", "c-1"]
COLLECTION = ["api", "v1", "customers"]


def request(method: str, path: list[str], scopes: list[str], roles: tuple[str, ...] = ()) -> Any:
    return {
        "method": method,
        "path": path,
        "route": route_of(path),
        "principal": {"sub": "user-1", "scopes": scopes, "roles": list(roles)},
    }


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def fake_opa(aiohttp_server: Any) -> FakeOpa:
    fake = FakeOpa()
    server = await aiohttp_server(fake.make_app(), host="127.0.0.1")
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
def fake_engine(fake_opa: FakeOpa, session: aiohttp.ClientSession) -> OpaPolicyEngine:
    return OpaPolicyEngine(session, fake_opa.url, timeout_s=0.2)


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.opa)])
def engine(request: pytest.FixtureRequest, session: aiohttp.ClientSession) -> Any:
    """Both servers: the fake, and a real OPA at OPA_URL (skipped when unset)."""
    if request.param == "fake":
        return request.getfixturevalue("fake_engine")
    url = os.environ.get("OPA_URL")
    if not url:
        pytest.skip("OPA_URL is not set: no real OPA to run against")
    return OpaPolicyEngine(session, url, timeout_s=2.0)


# --- the default policy, through either server ---


async def test_a_ready_server_passes_the_readiness_check(engine: OpaPolicyEngine) -> None:
    await engine.check()


async def test_readiness_check_fails_when_opa_fails_or_is_gone(
    fake_opa: FakeOpa, fake_engine: OpaPolicyEngine, session: aiohttp.ClientSession
) -> None:
    fake_opa.down = True
    with pytest.raises(PolicyEngineError):
        await fake_engine.check()
    with pytest.raises(PolicyEngineError):
        await OpaPolicyEngine(session, "http://127.0.0.1:1", timeout_s=0.2).check()


async def test_read_scope_allows_get(engine: OpaPolicyEngine) -> None:
    decision = await engine.decide(request("GET", ITEM, ["customers:read"]))
    assert decision.allow is True
    assert decision.masked_fields == {"cpf", "phone"}


async def test_read_scope_denies_post(engine: OpaPolicyEngine) -> None:
    decision = await engine.decide(request("POST", COLLECTION, ["customers:read"]))
    assert decision.allow is False
    assert decision.reasons == ("missing scope customers:write",)


async def test_delete_needs_delete_scope(engine: OpaPolicyEngine) -> None:
    write = await engine.decide(request("DELETE", ITEM, ["customers:read", "customers:write"]))
    delete = await engine.decide(request("DELETE", ITEM, ["customers:delete"]))
    assert (write.allow, delete.allow) == (False, True)


async def test_role_from_data_grants_pii(engine: OpaPolicyEngine) -> None:
    decision = await engine.decide(request("GET", COLLECTION, [], ("dpo",)))
    assert decision.allow is True
    assert decision.masked_fields == frozenset()


# --- OPA's answers, from the fake ---


async def test_sends_the_input_document(fake_opa: FakeOpa, fake_engine: OpaPolicyEngine) -> None:
    await fake_engine.decide(request("GET", ITEM, ["customers:read"]))
    assert fake_opa.inputs == [request("GET", ITEM, ["customers:read"])]


async def test_undefined_result_is_deny(fake_opa: FakeOpa, fake_engine: OpaPolicyEngine) -> None:
    fake_opa.undefined = True
    decision = await fake_engine.decide(request("GET", ITEM, ["customers:read"]))
    assert decision == Decision.deny("policy decision is undefined")


async def test_malformed_result_is_deny(fake_opa: FakeOpa, fake_engine: OpaPolicyEngine) -> None:
    fake_opa.result = {"allow": "true", "reasons": [], "masked_fields": []}
    decision = await fake_engine.decide(request("GET", ITEM, ["customers:read"]))
    assert decision.allow is False


async def test_server_error_is_engine_error(
    fake_opa: FakeOpa, fake_engine: OpaPolicyEngine
) -> None:
    fake_opa.down = True
    with pytest.raises(PolicyEngineError) as caught:
        await fake_engine.decide(request("GET", ITEM, ["customers:read"]))
    assert isinstance(caught.value, ServiceUnavailable)  # a domain error: the edge answers 503


async def test_non_json_answer_is_engine_error(
    fake_opa: FakeOpa, fake_engine: OpaPolicyEngine
) -> None:
    fake_opa.garbage = True
    with pytest.raises(PolicyEngineError):
        await fake_engine.decide(request("GET", ITEM, ["customers:read"]))


async def test_slow_server_is_engine_error(fake_opa: FakeOpa, fake_engine: OpaPolicyEngine) -> None:
    fake_opa.slow = True
    with pytest.raises(PolicyEngineError):
        await fake_engine.decide(request("GET", ITEM, ["customers:read"]))


async def test_unreachable_server_is_engine_error(
    session: aiohttp.ClientSession, unused_tcp_port: int
) -> None:
    engine = OpaPolicyEngine(session, f"http://127.0.0.1:{unused_tcp_port}", 0.5)
    with pytest.raises(PolicyEngineError):
        await engine.decide(request("GET", ITEM, ["customers:read"]))


# --- lifecycle: OPA's decision carries visible_statuses ---


async def test_visible_statuses_through_opa(engine: OpaPolicyEngine) -> None:
    reader = await engine.decide(request("GET", ITEM, ["customers:read"]))
    dpo = await engine.decide(request("GET", ITEM, [], ("dpo",)))
    assert reader.visible_statuses == {"active"}
    assert dpo.visible_statuses == {"active", "blocked", "closed", "anonymized"}


async def test_lifecycle_actions_through_opa(engine: OpaPolicyEngine) -> None:
    block = [*ITEM, "block"]
    assert (await engine.decide(request("POST", block, ["customers:lifecycle"]))).allow is True
    assert (await engine.decide(request("POST", block, ["customers:anonymize"]))).allow is False


async def test_an_opa_result_without_visible_statuses_shows_only_active(
    fake_opa: FakeOpa, fake_engine: OpaPolicyEngine
) -> None:
    fake_opa.result = {"allow": True, "reasons": [], "masked_fields": []}
    decision = await fake_engine.decide(request("GET", ITEM, ["customers:read"]))
    assert decision.allow is True
    assert decision.visible_statuses == {"active"}
