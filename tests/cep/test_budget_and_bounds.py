"""Finding #7 of the third review: the CEP cache had no bound, and one caller's random CEPs
(305 ViaCEP calls in 14 s) could exhaust ViaCEP's quota, after which every registration at
a CEP outside the offline directory got 503. Now the in-process cache is bounded in entries
and bytes, and each caller's remote lookups come from its own budget."""

from __future__ import annotations

import json
import random
from typing import Any

from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from service.auth.local_issuer import issue_local_token
from service.cep.bounded_cache import BoundedMemoryCache
from service.cep.resolver import REMOTE_BURST, REMOTE_EVERY_S, RemoteBudget
from tests.fakes import FakeClock

OUTSIDE_OFFLINE = "00000001"  # known to the fake ViaCEP only


@given(
    writes=st.lists(
        st.tuples(st.integers(0, 300), st.text(max_size=200)), min_size=1, max_size=300
    ),
    max_entries=st.integers(1, 50),
    max_bytes=st.integers(50, 5000),
)
async def test_the_cache_never_holds_more_than_its_bounds(
    writes: list[tuple[int, str]], max_entries: int, max_bytes: int
) -> None:
    cache = BoundedMemoryCache(max_entries=max_entries, max_bytes=max_bytes)
    for key, text in writes:
        await cache.set(f"cep:v1:{key:08d}", {"address": {"street": text}}, ttl=600)
        assert len(cache) <= max_entries and cache.bytes <= max_bytes
    last_key, last_text = writes[-1]
    size = len(f"cep:v1:{last_key:08d}") + len(
        json.dumps({"address": {"street": last_text}}, separators=(",", ":"))
    )
    if size <= max_bytes:  # the newest entry is the last to go
        assert await cache.get(f"cep:v1:{last_key:08d}") == {"address": {"street": last_text}}


async def test_the_cache_evicts_the_least_recently_used_and_expires() -> None:
    clock = FakeClock()
    cache = BoundedMemoryCache(max_entries=2, clock=clock)
    await cache.set("a", 1, ttl=10)
    await cache.set("b", 2, ttl=10)
    assert await cache.get("a") == 1  # a is now the most recent
    await cache.set("c", 3, ttl=10)
    assert await cache.get("b") is None and await cache.get("a") == 1
    clock.advance(10)
    assert await cache.get("a") is None and len(cache) == 1


def test_a_budget_is_per_caller_and_refills() -> None:
    clock = FakeClock()
    budget = RemoteBudget(clock=clock)
    assert all(budget.take("sprayer") for _ in range(REMOTE_BURST))
    assert not budget.take("sprayer")
    assert budget.take("clerk")  # another caller is not affected
    assert budget.take(None)  # an operator command: unlimited
    clock.advance(REMOTE_EVERY_S)
    assert budget.take("sprayer") and not budget.take("sprayer")


def _token(settings: Any, sub: str) -> dict[str, str]:
    token = issue_local_token(settings, sub, ["customers:read", "customers:write"], [], 600)
    return {"Authorization": f"Bearer {token}"}


async def test_a_caller_spraying_random_ceps_leaves_the_provider_to_the_others(
    aiohttp_client: Any, make_settings: Any, viacep: Any, monkeypatch: Any
) -> None:
    from service.app import create_app

    quota = 3 * REMOTE_BURST  # ViaCEP blocks an address after this many requests
    answer = viacep.answer

    def with_quota(cep: str) -> web.StreamResponse:
        if viacep.calls > quota:
            return web.json_response({"message": "too many requests"}, status=429)
        return answer(cep)

    monkeypatch.setattr(viacep, "answer", with_quota)
    viacep.addresses[OUTSIDE_OFFLINE] = {
        "street": "Rua Remota",
        "neighborhood": "Centro",
        "city": "Longe",
        "state": "AM",
    }
    settings = make_settings()
    client = await aiohttp_client(create_app(settings))
    sprayer, clerk = _token(settings, "sprayer"), _token(settings, "clerk")
    rng = random.Random(7)
    for _ in range(5 * quota):  # random well-formed CEPs in invalid requests
        cep = f"{rng.randrange(10**8):08d}"
        body = {"name": "x", "email": "bad", "phone": "1", "cep": cep, "cpf": "1"}
        response = await client.post("/api/v1/customers", json=body, headers=sprayer)
        assert response.status in (422, 503)
    assert viacep.calls <= REMOTE_BURST  # its budget, not the provider's quota
    legit = {
        "name": "Maria da Silva",
        "email": "maria@example.com",
        "phone": "(11) 91234-5678",
        "cep": OUTSIDE_OFFLINE,
        "cpf": "529.982.247-25",
    }
    response = await client.post("/api/v1/customers", json=legit, headers=clerk)
    assert response.status == 201, await response.text()
    assert (await response.json())["address"]["city"] == "Longe"


async def test_a_caller_over_its_budget_still_gets_cached_and_offline_answers(
    aiohttp_client: Any, make_settings: Any, viacep: Any
) -> None:
    from service.app import create_app

    settings = make_settings()
    client = await aiohttp_client(create_app(settings))
    sprayer = _token(settings, "sprayer")
    for n in range(REMOTE_BURST + 5):
        body = {"name": "x", "email": "bad", "phone": "1", "cep": f"{n:08d}", "cpf": "1"}
        await client.post("/api/v1/customers", json=body, headers=sprayer)
    calls = viacep.calls
    ok = {
        "name": "Maria",
        "email": "m@example.com",
        "phone": "(11) 91234-5678",
        "cep": "01001-000",  # in the offline directory
        "cpf": "529.982.247-25",
    }
    response = await client.post("/api/v1/customers", json=ok, headers=sprayer)
    assert response.status == 201 and viacep.calls == calls
