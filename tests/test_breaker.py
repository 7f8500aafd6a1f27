"""Circuit breakers: the state machine, and each dependency it guards (CEP, OPA, JWKS)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.auth.jwks import JwksCache
from service.authz.decision import PolicyEngineError
from service.authz.opa import OpaPolicyEngine
from service.breaker import Breakers, BreakerState, CircuitBreaker, CircuitOpen
from service.settings import BreakerSettings
from tests.authz.fake_opa import FakeOpa
from tests.cep.conftest import make_tiny_db
from tests.factories import make_cpf
from tests.fakes import PRACA_DA_SE, FakeClock, FakeViaCep


class Boom(Exception):
    pass


async def ok() -> str:
    return "ok"


async def boom() -> str:
    raise Boom()


async def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Boom):
            await breaker.call(boom, Boom)


# --- the state machine ---


async def test_opens_after_n_consecutive_failures_not_before(clock: FakeClock) -> None:
    breaker = CircuitBreaker("dep", failures=3, cooldown_s=30, clock=clock)
    await fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    await fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN


async def test_a_success_resets_the_count(clock: FakeClock) -> None:
    breaker = CircuitBreaker("dep", failures=3, cooldown_s=30, clock=clock)
    await fail(breaker, 2)
    assert await breaker.call(ok) == "ok"
    await fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED


async def test_open_refuses_without_calling_until_the_cooldown(clock: FakeClock) -> None:
    breaker = CircuitBreaker("dep", failures=1, cooldown_s=30, clock=clock)
    await fail(breaker, 1)
    calls = 0

    async def counted() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    clock.advance(29.5)
    with pytest.raises(CircuitOpen) as info:
        await breaker.call(counted)
    assert calls == 0
    assert info.value.retry_after_s == 1 and info.value.name == "dep"
    clock.advance(0.5)
    assert breaker.state is BreakerState.HALF_OPEN
    assert await breaker.call(counted) == "ok"
    assert calls == 1 and breaker.state is BreakerState.CLOSED


async def test_half_open_lets_one_probe_through_and_its_failure_reopens(clock: FakeClock) -> None:
    breaker = CircuitBreaker("dep", failures=1, cooldown_s=10, clock=clock)
    await fail(breaker, 1)
    clock.advance(10)
    release = asyncio.Event()

    async def slow_failure() -> str:
        await release.wait()
        raise Boom()

    probe = asyncio.create_task(breaker.call(slow_failure, Boom))
    await asyncio.sleep(0)
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen):  # a second caller while the probe is in flight
        await breaker.call(ok)
    release.set()
    with pytest.raises(Boom):
        await probe
    assert breaker.state is BreakerState.OPEN  # and the cool-down starts again
    clock.advance(9)
    with pytest.raises(CircuitOpen):
        await breaker.call(ok)


async def test_other_exceptions_and_cancellation_do_not_count(clock: FakeClock) -> None:
    breaker = CircuitBreaker("dep", failures=1, cooldown_s=10, clock=clock)
    with pytest.raises(ValueError):
        await breaker.call(_raise_value_error, Boom)
    assert breaker.state is BreakerState.CLOSED
    await fail(breaker, 1)
    clock.advance(10)
    probe = asyncio.create_task(breaker.call(asyncio.Event().wait, Boom))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert await breaker.call(ok) == "ok"  # the cancelled probe freed the slot


async def _raise_value_error() -> str:
    raise ValueError("not a dependency failure")


def test_breakers_are_one_per_name_with_the_configured_thresholds(clock: FakeClock) -> None:
    breakers = Breakers(BreakerSettings(failures=2, cooldown_s=5), clock=clock)
    assert breakers.get("opa") is breakers.get("opa")
    breakers.get("cep:viacep")
    assert breakers.states() == {"cep:viacep": "closed", "opa": "closed"}


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("dep", failures=0)


# --- CEP: a ViaCEP that never answers costs its timeout a few times per cool-down ---

CEPS = [f"{20040000 + i:08d}" for i in range(12)]


@pytest.fixture
def hung_viacep(viacep: FakeViaCep) -> FakeViaCep:
    viacep.slow = True  # never answers: every call ends in the client's timeout
    return viacep


async def test_hung_viacep_is_skipped_after_n_timeouts_then_probed_after_the_cooldown(
    make_client, hung_viacep: FakeViaCep, clock: FakeClock, tmp_path: Path
) -> None:
    directory = make_tiny_db(
        tmp_path / "ceps.sqlite", {cep: ("RJ", "Rio de Janeiro", "Centro", "Rua A") for cep in CEPS}
    )
    client = await make_client(
        {
            "cep": {
                "viacep": {"base_url": hung_viacep.base_url, "timeout_s": 0.2},
                "offline": {"db_path": str(directory)},
            },
            "breaker": {"failures": 3, "cooldown_s": 30},
        },
        clock=clock,
    )

    async def register(i: int) -> dict[str, Any]:
        body = {"name": "Ana", "email": f"a{i}@example.com", "phone": "11912345678",
                "cep": CEPS[i], "cpf": make_cpf(200_000_000 + 7919 * i)}  # fmt: skip
        response = await client.post("/api/v1/customers", json=body)
        assert response.status == 201, await response.text()
        return await response.json()

    created = [await register(i) for i in range(8)]
    assert {c["address"]["source"] for c in created} == {"offline"}
    assert hung_viacep.calls == 3  # the other five never waited for ViaCEP
    assert await breaker_states(client) == {"cep:viacep": "open"}

    clock.advance(30)
    await register(8)  # the half-open probe: ViaCEP is asked once more, and still hangs
    assert hung_viacep.calls == 4
    await register(9)
    assert hung_viacep.calls == 4

    hung_viacep.slow = False
    hung_viacep.addresses[CEPS[10]] = PRACA_DA_SE
    clock.advance(30)
    assert (await register(10))["address"]["source"] == "viacep"
    assert hung_viacep.calls == 5
    assert await breaker_states(client) == {"cep:viacep": "closed"}


async def breaker_states(client) -> dict[str, str]:
    ready = await (await client.get("/health/ready")).json()
    metrics = await (await client.get("/metrics")).text()
    gauge = dict(re.findall(r'circuit_breaker_state\{dependency="([^"]+)"\} (\d)', metrics))
    values = {"closed": "0", "half_open": "1", "open": "2"}
    assert {name: values[state] for name, state in ready["breakers"].items()} == gauge
    return {name: state for name, state in ready["breakers"].items() if name == "cep:viacep"}


# --- OPA: open means 503 at once, and the sidecar gets no calls until the cool-down ---


@pytest.fixture
async def opa(aiohttp_server) -> FakeOpa:
    fake = FakeOpa()
    server = await aiohttp_server(fake.make_app())
    fake.url = str(server.make_url("/")).rstrip("/")
    return fake


async def test_opa_breaker_stops_calls_until_the_cooldown(opa: FakeOpa, clock: FakeClock) -> None:
    breaker = CircuitBreaker("opa", failures=3, cooldown_s=30, clock=clock)
    document = {"method": "GET", "path": ["api", "v1", "customers"], "route": "/api/v1/customers",
                "principal": {"sub": "u", "scopes": ["customers:read"], "roles": []}}  # fmt: skip
    opa.down = True
    async with aiohttp.ClientSession() as session:
        engine = OpaPolicyEngine(session, opa.url, timeout_s=0.5, breaker=breaker)
        for _ in range(6):
            with pytest.raises(PolicyEngineError):
                await engine.decide(document)
        assert len(opa.inputs) == 3
        opa.down = False
        clock.advance(30)
        assert (await engine.decide(document)).allow is True
        assert len(opa.inputs) == 4 and breaker.state is BreakerState.CLOSED


async def test_open_opa_breaker_answers_503_and_shows_in_probes(
    make_client, opa: FakeOpa, clock: FakeClock
) -> None:
    client = await make_client(
        {"authz": {"engine": "opa", "opa_url": opa.url}, "breaker": {"failures": 2}}, clock=clock
    )
    opa.down = True
    for _ in range(4):
        response = await client.get("/api/v1/customers")
        assert response.status == 503
        assert response.headers["Retry-After"].isdigit()
    assert len(opa.inputs) == 2
    ready = await (await client.get("/health/ready")).json()
    assert ready["breakers"]["opa"] == "open"
    assert (
        'circuit_breaker_state{dependency="opa"} 2.0' in await (await client.get("/metrics")).text()
    )


# --- JWKS: a dead key endpoint is not fetched on every unknown kid ---


async def test_jwks_breaker_stops_fetches_until_the_cooldown(clock: FakeClock) -> None:
    fetches = 0

    async def dead_loader() -> dict[str, Any]:
        nonlocal fetches
        fetches += 1
        raise aiohttp.ClientConnectionError("connection refused")

    breaker = CircuitBreaker("jwks", failures=2, cooldown_s=60, clock=clock)
    cache = JwksCache(dead_loader, refresh_cooldown_s=0, clock=clock, breaker=breaker)
    for _ in range(5):
        with pytest.raises(Exception, match="no keys could be loaded"):
            await cache.get_key("kid-1")
    assert fetches == 2 and breaker.state is BreakerState.OPEN
    clock.advance(60)
    with pytest.raises(Exception, match="no keys could be loaded"):
        await cache.get_key("kid-1")
    assert fetches == 3
