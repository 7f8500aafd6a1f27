from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from aiocache import Cache

from service.breaker import Breakers
from service.cep.base import Address, CepUnavailable
from service.cep.resolver import CACHE_KEY_PREFIX, CepResolver
from service.cep.viacep import ViaCepProvider
from service.settings import HttpProviderSettings
from tests.cep.conftest import BREAKER, TIMEOUT_S, cep_settings
from tests.fakes import MISSING_CEP, FakeBrasilApi, FakeViaCep

SE_VIACEP = Address("01001000", "Praça da Sé", "Sé", "São Paulo", "SP", "viacep")


# --- the provider chain ---


async def test_first_provider_that_finds_it_wins(make_resolver, viacep: FakeViaCep) -> None:
    resolver = make_resolver(cep_settings(("viacep", "offline"), viacep_url=viacep.base_url))
    assert await resolver.resolve("01001000") == SE_VIACEP


async def test_viacep_down_falls_back_to_offline(
    make_resolver, viacep: FakeViaCep, caplog: pytest.LogCaptureFixture
) -> None:
    viacep.down = True
    resolver = make_resolver(cep_settings(("viacep", "offline"), viacep_url=viacep.base_url))
    with caplog.at_level(logging.WARNING, logger="service.cep.resolver"):
        address = await resolver.resolve("01001000")
    assert address is not None
    assert address.source == "offline"
    assert (address.street, address.city, address.state) == ("Praça da Sé", "São Paulo", "SP")
    assert "viacep" in caplog.text and "01001000" in caplog.text


async def test_viacep_slow_falls_back_to_brasilapi(
    make_resolver, viacep: FakeViaCep, brasilapi: FakeBrasilApi
) -> None:
    viacep.slow = True
    settings = cep_settings(
        ("viacep", "brasilapi"),
        viacep_url=viacep.base_url,
        brasilapi_url=brasilapi.base_url,
        timeout_s=0.1,
    )
    address = await make_resolver(settings).resolve("01001000")
    assert address is not None and address.source == "brasilapi"


async def test_authoritative_missing_is_final(
    make_resolver, viacep: FakeViaCep, tiny_db: Path
) -> None:
    # The offline directory has 20040020, but ViaCEP (authoritative) says it does not exist.
    settings = cep_settings(("viacep", "offline"), viacep_url=viacep.base_url, db_path=str(tiny_db))
    assert await make_resolver(settings).resolve("20040020") is None
    assert viacep.calls == 1


async def test_offline_miss_moves_on_to_the_next_provider(
    make_resolver, viacep: FakeViaCep, tiny_db: Path
) -> None:
    settings = cep_settings(("offline", "viacep"), viacep_url=viacep.base_url, db_path=str(tiny_db))
    address = await make_resolver(settings).resolve("01001000")
    assert address == SE_VIACEP


async def test_all_providers_down_is_unavailable(
    make_resolver, viacep: FakeViaCep, brasilapi: FakeBrasilApi
) -> None:
    viacep.down = brasilapi.down = True
    settings = cep_settings(
        ("viacep", "brasilapi"), viacep_url=viacep.base_url, brasilapi_url=brasilapi.base_url
    )
    with pytest.raises(CepUnavailable):
        await make_resolver(settings).resolve("01001000")
    assert (viacep.calls, brasilapi.calls) == (1, 1)


async def test_offline_miss_while_viacep_down_is_unavailable(
    make_resolver, viacep: FakeViaCep
) -> None:
    viacep.down = True
    resolver = make_resolver(cep_settings(("viacep", "offline"), viacep_url=viacep.base_url))
    with pytest.raises(CepUnavailable):
        await resolver.resolve(MISSING_CEP)


async def test_offline_only_miss_is_not_found(make_resolver) -> None:
    assert await make_resolver(cep_settings(("offline",))).resolve(MISSING_CEP) is None


# --- cache ---


class RecordingCache:
    """A memory cache that records each set() with its TTL."""

    def __init__(self) -> None:
        self.inner = Cache(Cache.MEMORY)
        self.sets: list[tuple[str, Any, float]] = []

    async def get(self, key: str) -> Any:
        return await self.inner.get(key)

    async def set(self, key: str, value: Any, ttl: float) -> None:
        self.sets.append((key, value, ttl))
        await self.inner.set(key, value, ttl=ttl)

    async def close(self) -> None:
        await self.inner.close()


class BrokenCache:
    async def get(self, key: str) -> Any:
        raise ConnectionError("cache down")

    async def set(self, key: str, value: Any, ttl: float) -> None:
        raise ConnectionError("cache down")

    async def close(self) -> None:
        pass


def viacep_resolver(session, fake: FakeViaCep, cache: Any) -> CepResolver:
    provider = ViaCepProvider(HttpProviderSettings(fake.base_url, TIMEOUT_S), session)
    return CepResolver(
        [provider], cache, ttl_found_s=600, ttl_missing_s=60, breakers=Breakers(BREAKER)
    )


async def test_found_is_cached(make_resolver, viacep: FakeViaCep) -> None:
    resolver = make_resolver(cep_settings(("viacep",), viacep_url=viacep.base_url))
    first = await resolver.resolve("01001000")
    viacep.down = True  # a second provider call would now fail
    assert await resolver.resolve("01001000") == first == SE_VIACEP
    assert viacep.calls == 1


async def test_found_and_missing_are_cached_with_their_own_ttls(
    session, viacep: FakeViaCep
) -> None:
    cache = RecordingCache()
    resolver = viacep_resolver(session, viacep, cache)
    try:
        assert await resolver.resolve("01001000") == SE_VIACEP
        assert await resolver.resolve(MISSING_CEP) is None
        assert await resolver.resolve(MISSING_CEP) is None
    finally:
        await resolver.close()
    assert viacep.calls == 2
    assert cache.sets == [
        (CACHE_KEY_PREFIX + "01001000", {"address": SE_VIACEP.as_dict()}, 600),
        (CACHE_KEY_PREFIX + MISSING_CEP, {"address": None}, 60),
    ]


async def test_ttl_zero_turns_caching_off(make_resolver, viacep: FakeViaCep) -> None:
    settings = cep_settings(("viacep",), viacep_url=viacep.base_url, ttl_missing_s=0)
    resolver = make_resolver(settings)
    assert await resolver.resolve(MISSING_CEP) is None
    assert await resolver.resolve(MISSING_CEP) is None
    assert viacep.calls == 2


async def test_unavailable_is_not_cached(make_resolver, viacep: FakeViaCep) -> None:
    viacep.down = True
    resolver = make_resolver(cep_settings(("viacep",), viacep_url=viacep.base_url))
    with pytest.raises(CepUnavailable):
        await resolver.resolve("01001000")
    viacep.down = False
    assert await resolver.resolve("01001000") == SE_VIACEP
    assert viacep.calls == 2


async def test_a_broken_cache_does_not_fail_the_lookup(
    session, viacep: FakeViaCep, caplog: pytest.LogCaptureFixture
) -> None:
    resolver = viacep_resolver(session, viacep, BrokenCache())
    with caplog.at_level(logging.WARNING, logger="service.cep.resolver"):
        assert await resolver.resolve("01001000") == SE_VIACEP
    await resolver.close()
    assert "cache read failed" in caplog.text and "cache write failed" in caplog.text


async def test_an_unreadable_cache_entry_is_ignored(session, viacep: FakeViaCep) -> None:
    cache = Cache(Cache.MEMORY)
    await cache.set(CACHE_KEY_PREFIX + "01001000", {"address": {"cep": "01001000"}})
    resolver = viacep_resolver(session, viacep, cache)
    try:
        assert await resolver.resolve("01001000") == SE_VIACEP
    finally:
        await resolver.close()
    assert viacep.calls == 1


# --- single flight ---


async def test_concurrent_resolves_share_one_call(make_resolver, viacep: FakeViaCep) -> None:
    resolver = make_resolver(cep_settings(("viacep",), viacep_url=viacep.base_url))
    results = await asyncio.gather(*(resolver.resolve("01001000") for _ in range(20)))
    assert results == [SE_VIACEP] * 20
    assert viacep.calls == 1


class SlowFirstReadCache:
    """A cache whose first read answers what it found only after `release` (a slow Redis
    round trip): meanwhile another caller's lookup may finish and store its answer."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.release = asyncio.Event()
        self.reads = 0

    async def get(self, key: str) -> Any:
        self.reads += 1
        found = self.values.get(key)
        if self.reads == 1:
            await self.release.wait()
        return found

    async def set(self, key: str, value: Any, ttl: float) -> None:
        self.values[key] = value

    async def close(self) -> None:
        pass


async def test_a_lookup_that_ends_during_a_cache_read_is_not_repeated(
    session, viacep: FakeViaCep
) -> None:
    cache = SlowFirstReadCache()
    provider = ViaCepProvider(HttpProviderSettings(viacep.base_url, TIMEOUT_S), session)
    resolver = CepResolver(
        [provider], cache, ttl_found_s=600, ttl_missing_s=60, breakers=Breakers(BREAKER)
    )
    late = asyncio.create_task(resolver.resolve("01001000"))  # reads "nothing", then waits
    await asyncio.sleep(0)
    assert await resolver.resolve("01001000") == SE_VIACEP  # looked up and stored, done
    cache.release.set()
    assert await late == SE_VIACEP  # its read was stale; the answer was not fetched again
    assert viacep.calls == 1


async def test_concurrent_failures_share_one_call_and_all_see_it(
    make_resolver, viacep: FakeViaCep
) -> None:
    viacep.down = True
    resolver = make_resolver(cep_settings(("viacep",), viacep_url=viacep.base_url))
    results = await asyncio.gather(
        *(resolver.resolve("01001000") for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, CepUnavailable) for r in results)
    assert viacep.calls == 1


async def wait_for_calls(fake: FakeViaCep, n: int) -> None:
    while fake.calls < n:
        await asyncio.sleep(0.01)


async def test_a_cancelled_waiter_does_not_cancel_the_others(
    make_resolver, viacep: FakeViaCep
) -> None:
    viacep.slow = True
    resolver = make_resolver(cep_settings(("viacep",), viacep_url=viacep.base_url))
    first = asyncio.create_task(resolver.resolve("01001000"))
    second = asyncio.create_task(resolver.resolve("01001000"))
    await asyncio.wait_for(wait_for_calls(viacep, 1), TIMEOUT_S)

    first.cancel()  # the caller that started the lookup goes away
    viacep.release()
    assert await second == SE_VIACEP
    assert first.cancelled()
    assert viacep.calls == 1
    # The lookup is over: a later resolve is served from the cache, not joined to it.
    assert await resolver.resolve("01001000") == SE_VIACEP
    assert viacep.calls == 1


async def test_close_cancels_lookups_in_flight(make_resolver, viacep: FakeViaCep) -> None:
    viacep.slow = True
    resolver = make_resolver(cep_settings(("viacep",), viacep_url=viacep.base_url))
    waiter = asyncio.create_task(resolver.resolve("01001000"))
    await asyncio.wait_for(wait_for_calls(viacep, 1), TIMEOUT_S)
    await resolver.close()
    with pytest.raises(asyncio.CancelledError):
        await waiter


# --- building ---


async def test_close_closes_the_offline_directory(make_resolver, tiny_db: Path) -> None:
    resolver = make_resolver(cep_settings(("offline",), db_path=str(tiny_db)))
    assert await resolver.resolve("20040020") is not None
    await resolver.close()
    with pytest.raises(Exception, match="closed"):
        await resolver.providers[0].lookup("20040020")
