"""The CEP cache on a real redis-server (cep.cache.url redis://): shared by replicas, with TTLs."""

from __future__ import annotations

import dataclasses

import redis.asyncio as aioredis

from service.cep.resolver import CACHE_KEY_PREFIX
from service.settings import CepCacheSettings
from tests.cep.conftest import cep_settings
from tests.fakes import MISSING_CEP, FakeViaCep


async def test_answers_are_shared_through_redis_with_their_ttls(
    make_resolver, viacep: FakeViaCep, redis_url: str
) -> None:
    settings = dataclasses.replace(
        cep_settings(("viacep",), viacep_url=viacep.base_url),
        cache=CepCacheSettings(redis_url, ttl_found_s=600, ttl_missing_s=60),
    )
    replica_a, replica_b = make_resolver(settings), make_resolver(settings)
    found = await replica_a.resolve("01001000")
    assert await replica_a.resolve(MISSING_CEP) is None
    assert viacep.calls == 2

    assert await replica_b.resolve("01001000") == found  # from Redis, not from ViaCEP
    assert await replica_b.resolve(MISSING_CEP) is None
    assert viacep.calls == 2

    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = {key.decode() async for key in client.scan_iter("*")}
        assert keys == {CACHE_KEY_PREFIX + "01001000", CACHE_KEY_PREFIX + MISSING_CEP}
        assert 590 < await client.ttl(CACHE_KEY_PREFIX + "01001000") <= 600
        assert 50 < await client.ttl(CACHE_KEY_PREFIX + MISSING_CEP) <= 60
    finally:
        await client.aclose()
