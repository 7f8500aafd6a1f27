"""The verified-token cache: hits until shortly before `exp`, bounded, dropped with its key."""

from __future__ import annotations

import time
from typing import Any

import pytest

from service.auth.jwks import JwksCache
from service.auth.jwt import TokenVerifier
from service.auth.principal import Principal
from service.auth.token_cache import VerifiedTokens
from service.errors import Unauthenticated
from tests.auth.jwt_helpers import AUDIENCE, ISSUER, bearer, claims, jwks, public_jwk, rsa_key, sign
from tests.fakes import FakeClock

PRINCIPAL = Principal("user-1", frozenset({"customers:read"}), frozenset(), ISSUER)


def held(key: Any) -> bool:
    return True


def test_hit_until_margin_before_exp() -> None:
    clock = FakeClock(1_000_000.0)
    cache = VerifiedTokens(margin_s=5, clock=clock)
    key: Any = object()
    cache.put("token-a", PRINCIPAL, key, expires_at=clock.now + 60)
    clock.now += 54.9
    assert cache.get("token-a", held) == PRINCIPAL
    clock.now += 0.2  # 4.9 s before exp: inside the margin
    assert cache.get("token-a", held) is None
    assert len(cache) == 0


def test_token_already_inside_the_margin_is_not_kept() -> None:
    clock = FakeClock(1_000_000.0)
    cache = VerifiedTokens(margin_s=5, clock=clock)
    cache.put("token-a", PRINCIPAL, object(), expires_at=clock.now + 3)  # type: ignore[arg-type]
    assert cache.get("token-a", held) is None


def test_bounded_the_oldest_goes_first() -> None:
    clock = FakeClock(1_000_000.0)
    cache = VerifiedTokens(max_entries=2, clock=clock)
    key: Any = object()
    for token in ("a", "b"):
        cache.put(token, PRINCIPAL, key, expires_at=clock.now + 60)
    assert cache.get("a", held) == PRINCIPAL  # a hit does not reorder
    cache.put("c", PRINCIPAL, key, expires_at=clock.now + 60)
    assert len(cache) == 2
    assert cache.get("a", held) is None
    assert cache.get("b", held) == PRINCIPAL
    assert cache.get("c", held) == PRINCIPAL


def test_entry_dropped_when_its_key_is_no_longer_held() -> None:
    clock = FakeClock(1_000_000.0)
    cache = VerifiedTokens(clock=clock)
    key: Any = object()
    cache.put("a", PRINCIPAL, key, expires_at=clock.now + 60)
    assert cache.get("a", lambda k: False) is None
    assert cache.get("a", held) is None  # gone, not only skipped


@pytest.fixture(scope="module")
def keys() -> tuple[Any, Any]:
    return rsa_key(), rsa_key()


async def test_verifier_serves_repeats_from_the_cache_and_refuses_a_tampered_copy(keys):
    first, _ = keys
    verifier = TokenVerifier(
        JwksCache(_loader({"keys": [public_jwk(first, "k1")]})),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["RS256"],
    )
    token = sign(claims(exp=int(time.time()) + 600), first, kid="k1")
    principal = await verifier.authenticate(bearer(token))
    assert await verifier.authenticate(bearer(token)) == principal
    assert len(verifier.verified) == 1
    # Another spelling of the same token is verified again (and cached on its own).
    assert await verifier.authenticate("bearer  " + token) == principal
    assert len(verifier.verified) == 2
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(Unauthenticated):
        await verifier.authenticate(bearer(forged))


async def test_key_removed_from_the_jwks_drops_its_tokens(keys):
    first, second = keys
    current = {"keys": [public_jwk(first, "k1")]}
    verifier = TokenVerifier(
        JwksCache(lambda: _current(current), refresh_cooldown_s=0),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["RS256"],
    )
    old = bearer(sign(claims(exp=int(time.time()) + 600), first, kid="k1"))
    await verifier.authenticate(old)
    current["keys"] = [public_jwk(second, "k2")]  # the issuer rotates k1 out
    # a token signed by the new key makes the cache refetch the set
    await verifier.authenticate(bearer(sign(claims(exp=int(time.time()) + 600), second, kid="k2")))
    with pytest.raises(Unauthenticated, match="known key"):
        await verifier.authenticate(old)


async def _current(value: dict[str, Any]) -> dict[str, Any]:
    return jwks(*value["keys"])


def _loader(value: dict[str, Any]) -> Any:
    async def load() -> dict[str, Any]:
        return value

    return load
