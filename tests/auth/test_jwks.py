"""JwksCache against a fake JWKS server on 127.0.0.1, a file, and the settings wiring."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from service.auth.jwks import (
    JwksCache,
    KeyNotFound,
    KeysUnavailable,
    file_jwks_loader,
    http_jwks_loader,
)
from service.auth.jwt import build_token_verifier
from service.errors import Unauthenticated
from service.settings import SettingsError, load_settings
from tests.auth.jwt_helpers import ISSUER, bearer, claims, ec_key, jwks, public_jwk, sign

COOLDOWN_S = 30.0


@dataclass
class FakeJwksServer:
    """Serves `keys` at /jwks; counts fetches; can fail or hold responses."""

    keys: dict[str, Any]
    url: str = ""
    fetches: int = 0
    status: int = 200
    body: str | None = None  # served instead of `keys` when set
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    request_seen: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        self.request_seen.set()
        await self.gate.wait()
        if self.status != 200:
            return web.json_response({"error": "down"}, status=self.status)
        if self.body is not None:
            return web.Response(text=self.body, content_type="application/json")
        return web.json_response(self.keys, content_type="application/jwk-set+json")


KEY_1 = ec_key()
KEY_2 = ec_key()
JWK_1 = public_jwk(KEY_1, "k1")
JWK_2 = public_jwk(KEY_2, "k2")


@pytest.fixture
async def server(aiohttp_server) -> FakeJwksServer:
    fake = FakeJwksServer(keys=jwks(JWK_1))
    fake.gate.set()
    app = web.Application()
    app.router.add_get("/jwks", fake.handle)
    test_server = await aiohttp_server(app, host="127.0.0.1")
    fake.url = str(test_server.make_url("/jwks"))
    return fake


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def cache(server, session, clock) -> JwksCache:
    loader = http_jwks_loader(session, server.url, timeout_s=5)
    return JwksCache(loader, refresh_cooldown_s=COOLDOWN_S, clock=clock)


async def test_loads_on_first_use_then_serves_from_cache(cache, server):
    assert (await cache.get_key("k1")).key_id == "k1"
    assert (await cache.get_key("k1")).key_id == "k1"
    assert server.fetches == 1


async def test_rotation_unknown_kid_refetches_once(cache, server, clock):
    await cache.get_key("k1")
    server.keys = jwks(JWK_1, JWK_2)
    clock.advance(COOLDOWN_S + 1)
    assert (await cache.get_key("k2")).key_id == "k2"
    assert (await cache.get_key("k1")).key_id == "k1"
    assert server.fetches == 2


async def test_flood_of_unknown_kids_fetches_once_per_cooldown(cache, server, clock):
    await cache.get_key("k1")
    for round_number in (1, 2):
        clock.advance(COOLDOWN_S + 1)
        for i in range(20):
            with pytest.raises(KeyNotFound):
                await cache.get_key(f"forged-{round_number}-{i}")
        assert server.fetches == 1 + round_number
    clock.advance(COOLDOWN_S / 2)
    with pytest.raises(KeyNotFound):
        await cache.get_key("forged-again")
    assert server.fetches == 3


async def test_new_key_within_cooldown_is_found_after_it(cache, server, clock):
    await cache.get_key("k1")
    server.keys = jwks(JWK_1, JWK_2)
    with pytest.raises(KeyNotFound):
        await cache.get_key("k2")
    assert server.fetches == 1
    clock.advance(COOLDOWN_S + 1)
    assert (await cache.get_key("k2")).key_id == "k2"


async def test_concurrent_unknown_kid_lookups_share_one_fetch(cache, server):
    server.gate.clear()
    lookups = [asyncio.create_task(cache.get_key("k1")) for _ in range(20)]
    await server.request_seen.wait()
    for _ in range(5):  # let every lookup reach the cache while the fetch is held
        await asyncio.sleep(0)
    server.gate.set()
    keys = await asyncio.gather(*lookups)
    assert {key.key_id for key in keys} == {"k1"}
    assert server.fetches == 1


@pytest.mark.parametrize("failure", ["http 500", "not json", "no usable key"])
async def test_failed_fetch_keeps_last_good_keys(cache, server, clock, failure):
    await cache.get_key("k1")
    if failure == "http 500":
        server.status = 500
    elif failure == "not json":
        server.body = "<html>oops</html>"
    else:
        server.keys = jwks({"kty": "XYZ", "kid": "weird"})
    clock.advance(COOLDOWN_S + 1)
    with pytest.raises(KeyNotFound):
        await cache.get_key("k2")
    assert server.fetches == 2
    assert (await cache.get_key("k1")).key_id == "k1"


async def test_server_down_from_the_start_is_keys_unavailable(cache, server, clock):
    server.status = 503
    with pytest.raises(KeysUnavailable):
        await cache.get_key("k1")
    server.status = 200
    with pytest.raises(KeysUnavailable):  # within the cooldown: no new fetch
        await cache.get_key("k1")
    assert server.fetches == 1
    clock.advance(COOLDOWN_S + 1)
    assert (await cache.get_key("k1")).key_id == "k1"


async def test_unusable_keys_are_skipped_not_fatal(cache, server):
    server.keys = {
        "keys": [
            {"kty": "XYZ", "kid": "unknown-kty"},
            {"kty": "oct", "kid": "symmetric", "k": "c2VjcmV0"},
            {**public_jwk(KEY_2, "enc"), "use": "enc"},
            "not an object",
            JWK_1,
        ]
    }
    assert (await cache.get_key("k1")).key_id == "k1"
    for kid in ("unknown-kty", "symmetric", "enc"):
        with pytest.raises(KeyNotFound):
            await cache.get_key(kid)


async def test_token_without_kid_needs_a_single_key_set(cache, server, clock):
    assert (await cache.get_key(None)).key_id == "k1"
    server.keys = jwks(JWK_1, JWK_2)
    clock.advance(COOLDOWN_S + 1)
    await cache.get_key("k2")
    with pytest.raises(KeyNotFound):
        await cache.get_key(None)


async def test_file_jwks_is_reread_on_unknown_kid(tmp_path, clock):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(JWK_1)))
    cache = JwksCache(file_jwks_loader(path), refresh_cooldown_s=COOLDOWN_S, clock=clock)
    assert (await cache.get_key("k1")).key_id == "k1"
    path.write_text(json.dumps(jwks(JWK_2)))
    clock.advance(COOLDOWN_S + 1)
    assert (await cache.get_key("k2")).key_id == "k2"
    with pytest.raises(KeyNotFound):
        await cache.get_key("k1")


def external_idp_settings(jwks_url: str):
    return load_settings(
        environ={},
        overrides={
            "auth": {
                "issuer": ISSUER,
                "jwks_url": jwks_url,
                "local_issuer": {"enabled": False},
            }
        },
    )


async def test_build_token_verifier_over_http(server, session):
    verifier = build_token_verifier(external_idp_settings(server.url), session)
    principal = await verifier.authenticate(bearer(sign(claims(sub="bob"), KEY_1, kid="k1")))
    assert principal.subject == "bob"
    assert server.fetches == 1


async def test_build_token_verifier_from_file(tmp_path, session):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(JWK_1)))
    verifier = build_token_verifier(external_idp_settings(str(path)), session)
    assert (await verifier.authenticate(bearer(sign(claims(), KEY_1, kid="k1")))).subject
    with pytest.raises(Unauthenticated, match="signature"):
        await verifier.authenticate(bearer(sign(claims(), KEY_2, kid="k1")))


@pytest.mark.parametrize("jwks_url", ["", "does/not/exist.json"])
def test_the_loader_refuses_an_external_idp_without_a_key_source(jwks_url):
    with pytest.raises(SettingsError, match="auth.jwks_url"):
        external_idp_settings(jwks_url)
