"""TokenVerifier: what it accepts, and every way a token must be refused with a 401."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from service.auth.jwks import JwksCache, static_jwks_loader
from service.auth.jwt import TokenVerifier
from service.auth.principal import Principal
from service.errors import ServiceUnavailable, Unauthenticated
from tests.auth.jwt_helpers import (
    AUDIENCE,
    ISSUER,
    PrivateKey,
    bearer,
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


@pytest.fixture(scope="module")
def rsa() -> PrivateKey:
    return rsa_key()


@pytest.fixture(scope="module")
def ec() -> PrivateKey:
    return ec_key()


def make_verifier(
    *jwk: dict[str, Any], leeway_s: float = 0, roles_claim: str = "roles"
) -> TokenVerifier:
    return TokenVerifier(
        JwksCache(static_jwks_loader(jwks(*jwk))),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["RS256", "ES256"],
        leeway_s=leeway_s,
        roles_claim=roles_claim,
    )


@pytest.fixture
def verifier(rsa: PrivateKey, ec: PrivateKey) -> TokenVerifier:
    return make_verifier(public_jwk(rsa, "rsa-1"), public_jwk(ec, "ec-1"))


async def test_valid_rsa_and_ec_tokens(verifier, rsa, ec):
    for key, kid in ((rsa, "rsa-1"), (ec, "ec-1")):
        token = sign(claims(sub="alice", scope="customers:read customers:write"), key, kid=kid)
        principal = await verifier.authenticate(bearer(token))
        assert principal == Principal(
            subject="alice",
            scopes=frozenset({"customers:read", "customers:write"}),
            roles=frozenset(),
            issuer=ISSUER,
        )


async def test_scheme_is_case_insensitive(verifier, rsa):
    token = sign(claims(), rsa, kid="rsa-1")
    assert (await verifier.authenticate(f"bearer {token}")).subject == "user-1"


async def test_no_header_is_a_plain_bearer_challenge(verifier):
    with pytest.raises(Unauthenticated) as info:
        await verifier.authenticate(None)
    assert info.value.headers["WWW-Authenticate"] == "Bearer"


Case = Callable[[PrivateKey], str]


def _now() -> int:
    """Read when the case runs: the suite takes minutes, a time read at import would drift."""
    return int(time.time())


# (header builder from the trusted RSA key "rsa-1", words the detail must contain)
REFUSED: dict[str, tuple[Case, str]] = {
    "basic auth": (lambda k: "Basic dXNlcjpwYXNz", "bearer"),
    "bearer without token": (lambda k: "Bearer ", "bearer token"),
    "token with spaces": (lambda k: "Bearer abc def", "bearer token"),
    "garbage": (lambda k: bearer("not-a-jwt"), "well-formed"),
    "garbage with dots": (lambda k: bearer("a.b.c"), "well-formed"),
    "expired": (lambda k: bearer(sign(claims(exp=_now() - 60), k, kid="rsa-1")), "expired"),
    "wrong aud": (lambda k: bearer(sign(claims(aud="other-api"), k, kid="rsa-1")), "audience"),
    "wrong iss": (
        lambda k: bearer(sign(claims(iss="https://evil.test"), k, kid="rsa-1")),
        "issuer",
    ),
    "no exp": (lambda k: bearer(sign(claims(exp=None), k, kid="rsa-1")), "'exp'"),
    "no iss": (lambda k: bearer(sign(claims(iss=None), k, kid="rsa-1")), "'iss'"),
    "no aud": (lambda k: bearer(sign(claims(aud=None), k, kid="rsa-1")), "'aud'"),
    "no sub": (lambda k: bearer(sign(claims(sub=None), k, kid="rsa-1")), "'sub'"),
    "future nbf": (
        lambda k: bearer(sign(claims(nbf=_now() + 120), k, kid="rsa-1")),
        "not valid yet",
    ),
    "alg none": (lambda k: bearer(unsigned_token(claims(), kid="rsa-1")), "algorithm"),
    "HS256 with public key": (
        lambda k: bearer(hs256_with_public_key(claims(), k, kid="rsa-1")),
        "algorithm",
    ),
    "tampered payload": (
        lambda k: bearer(tamper(sign(claims(), k, kid="rsa-1"), sub="admin")),
        "signature",
    ),
    "right kid, foreign key": (
        lambda k: bearer(sign(claims(), rsa_key(), kid="rsa-1")),
        "signature",
    ),
    "unknown kid": (lambda k: bearer(sign(claims(), k, kid="nope")), "known key"),
    "alg of another key type": (
        lambda k: bearer(sign(claims(), ec_key(), kid="rsa-1", alg="ES256")),
        "does not match",
    ),
    "alg outside allow-list": (
        lambda k: bearer(sign(claims(), k, kid="rsa-1", alg="RS512")),
        "not accepted",
    ),
    "no kid with two keys": (lambda k: bearer(sign(claims(), k, kid=None)), "known key"),
}


@pytest.mark.parametrize("case", REFUSED)
async def test_refused_with_invalid_token(verifier, rsa, case):
    build, detail_words = REFUSED[case]
    header = build(rsa)
    with pytest.raises(Unauthenticated) as info:
        await verifier.authenticate(header)
    problem = info.value
    assert problem.status == 401
    assert problem.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert detail_words.lower() in problem.detail.lower()
    token = header.partition(" ")[2]
    assert len(token) < 10 or token not in problem.detail


async def test_token_without_kid_accepted_when_the_set_has_one_key(rsa):
    verifier = make_verifier(public_jwk(rsa, "only"))
    assert (await verifier.authenticate(bearer(sign(claims(), rsa, kid=None)))).subject == "user-1"


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-10, True), (-60, False)],
    ids=["expired within leeway", "expired beyond leeway"],
)
async def test_leeway_on_exp(rsa, offset, accepted):
    verifier = make_verifier(public_jwk(rsa, "k"), leeway_s=30)
    token = bearer(sign(claims(exp=int(time.time()) + offset), rsa, kid="k"))
    if accepted:
        assert (await verifier.authenticate(token)).subject == "user-1"
    else:
        with pytest.raises(Unauthenticated, match="expired"):
            await verifier.authenticate(token)


async def test_leeway_on_nbf(rsa):
    verifier = make_verifier(public_jwk(rsa, "k"), leeway_s=30)
    token = bearer(sign(claims(nbf=int(time.time()) + 10), rsa, kid="k"))
    assert (await verifier.authenticate(token)).subject == "user-1"


@pytest.mark.parametrize(
    ("extra", "scopes"),
    [
        ({"scope": "a b  c"}, {"a", "b", "c"}),
        ({"scp": ["a", "b"]}, {"a", "b"}),
        ({"scp": "a b"}, {"a", "b"}),
        ({"scope": "a", "scp": ["b"]}, {"a"}),
        ({}, set()),
        ({"scope": 42}, set()),
    ],
)
async def test_scopes(rsa, extra, scopes):
    verifier = make_verifier(public_jwk(rsa, "k"))
    principal = await verifier.authenticate(bearer(sign(claims(**extra), rsa, kid="k")))
    assert principal.scopes == frozenset(scopes)


@pytest.mark.parametrize(
    ("roles_claim", "extra", "roles"),
    [
        ("roles", {"roles": ["admin", "auditor"]}, {"admin", "auditor"}),
        ("realm_access.roles", {"realm_access": {"roles": ["ops"]}}, {"ops"}),
        ("realm_access.roles", {"roles": ["admin"]}, set()),
        ("realm_access.roles", {"realm_access": "ops"}, set()),
        ("roles", {"roles": "admin"}, set()),
        ("roles", {}, set()),
    ],
)
async def test_roles_from_claim_path(rsa, roles_claim, extra, roles):
    verifier = make_verifier(public_jwk(rsa, "k"), roles_claim=roles_claim)
    principal = await verifier.authenticate(bearer(sign(claims(**extra), rsa, kid="k")))
    assert principal.roles == frozenset(roles)


@pytest.mark.parametrize("alg", ["HS256", "none"])
def test_symmetric_algorithms_cannot_be_configured(alg):
    with pytest.raises(ValueError, match="asymmetric"):
        TokenVerifier(
            JwksCache(static_jwks_loader(jwks())),
            issuer=ISSUER,
            audience=AUDIENCE,
            algorithms=["RS256", alg],
        )


async def test_keys_never_loaded_is_503_not_401(rsa):
    async def broken_loader() -> dict[str, Any]:
        raise OSError("connection refused")

    verifier = TokenVerifier(
        JwksCache(broken_loader), issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"]
    )
    with pytest.raises(ServiceUnavailable):
        await verifier.authenticate(bearer(sign(claims(), rsa, kid="k")))
