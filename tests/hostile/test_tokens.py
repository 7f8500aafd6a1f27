"""Token edge cases: every malformed claim, header or Authorization value is a 401."""

from __future__ import annotations

import json
import warnings
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from service.auth.jwks import JwksCache, static_jwks_loader
from service.auth.jwt import TokenVerifier
from service.errors import Unauthenticated
from tests.auth.jwt_helpers import (
    AUDIENCE,
    ISSUER,
    PrivateKey,
    bearer,
    claims,
    ec_key,
    jwks,
    public_jwk,
    sign,
)


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return ec_key()


def verifier(*jwk: dict[str, Any], max_lifetime_s: int = 0) -> TokenVerifier:
    return TokenVerifier(
        JwksCache(static_jwks_loader(jwks(*jwk))),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["RS256", "ES256"],
        leeway_s=0,
        max_lifetime_s=max_lifetime_s,
    )


async def refused(token_verifier: TokenVerifier, header: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await token_verifier.authenticate(header)
    assert caught.value.status == 401
    return caught.value.detail


def raw_token(payload: bytes, key: PrivateKey, headers: dict[str, Any] | None = None) -> str:
    """A signed token over exactly these payload bytes (duplicate claims, NaN...)."""
    return jwt.api_jws.PyJWS().encode(
        payload, key, algorithm="ES256", headers={"kid": "k1", **(headers or {})}
    )


BAD_CLAIMS = [
    pytest.param({"sub": ""}, id="sub-empty"),
    pytest.param({"sub": "   "}, id="sub-blank"),
    pytest.param({"sub": "\u00a0\u2003"}, id="sub-unicode-blank"),
    pytest.param({"sub": 123}, id="sub-number"),
    pytest.param({"sub": ["user-1"]}, id="sub-list"),
    pytest.param({"sub": {"id": "user-1"}}, id="sub-object"),
    pytest.param({"sub": True}, id="sub-bool"),
    pytest.param({"sub": "user\n1"}, id="sub-newline"),
    pytest.param({"sub": "user\x1b[31m"}, id="sub-escape"),
    pytest.param({"sub": None}, id="sub-missing"),
    pytest.param({"exp": "9999999999"}, id="exp-numeric-string"),
    pytest.param({"exp": "1e10"}, id="exp-exponent-string"),
    pytest.param({"exp": True}, id="exp-bool"),
    pytest.param({"exp": [9999999999]}, id="exp-list"),
    pytest.param({"exp": None}, id="exp-missing"),
    pytest.param({"nbf": "0"}, id="nbf-numeric-string"),
    pytest.param({"nbf": False}, id="nbf-bool"),
    pytest.param({"nbf": {"t": 0}}, id="nbf-object"),
    pytest.param({"iat": "0"}, id="iat-numeric-string"),
    pytest.param({"iat": True}, id="iat-bool"),
    pytest.param({"iat": None, "exp": "4102444800"}, id="exp-string-without-iat"),
]


@pytest.mark.parametrize("changes", BAD_CLAIMS)
async def test_malformed_claims_are_refused(key, changes):
    token = sign(claims(**changes), key, kid="k1")
    await refused(verifier(public_jwk(key, "k1")), bearer(token))


@pytest.mark.parametrize(
    "payload",
    [
        b'{"iss": "%s", "aud": "%s", "sub": "user-1", "exp": Infinity}',
        b'{"iss": "%s", "aud": "%s", "sub": "user-1", "exp": NaN}',
        b'{"iss": "%s", "aud": "%s", "sub": "user-1", "exp": 1e999}',
        b'{"iss": "%s", "aud": "%s", "sub": "user-1", "exp": 9' + b"9" * 5000 + b"}",
        b'{"iss": "%s", "aud": "%s", "sub": "user-1", "sub": "admin", "exp": 4102444800}',
        b'{"iss": "%s", "aud": "%s", "sub": "user-1", "exp": 4102444800, "x": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}",
        b'["%s", "%s"]',
    ],
    ids=["infinity", "nan", "float-overflow", "huge-int", "duplicate-sub", "deep", "not-object"],
)
async def test_payloads_that_are_not_strict_json_are_refused(key, payload):
    token = raw_token(
        payload.replace(b"%s", ISSUER.encode(), 1).replace(b"%s", AUDIENCE.encode(), 1), key
    )
    await refused(verifier(public_jwk(key, "k1")), bearer(token))


@pytest.mark.parametrize(
    "headers",
    [{"crit": ["exp"]}, {"crit": ["b64"], "b64": True}, {"crit": []}, {"crit": "exp"}],
    ids=["crit-exp", "crit-b64", "crit-empty", "crit-string"],
)
async def test_crit_header_is_refused(key, headers):
    token = raw_token(json.dumps(claims()).encode(), key, headers)
    await refused(verifier(public_jwk(key, "k1")), bearer(token))


@pytest.mark.parametrize("bits", [1024, 1536])
async def test_rsa_keys_under_2048_bits_are_refused(bits):
    small = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyjwt warns about the short key while signing
        token = sign(claims(), small, kid="small")
    detail = await refused(verifier(public_jwk(small, "small")), bearer(token))
    assert "too weak" in detail


async def test_valid_token_control(key):
    principal = await verifier(public_jwk(key, "k1")).authenticate(
        bearer(sign(claims(), key, kid="k1"))
    )
    assert principal.subject == "user-1"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer \udce9",  # a raw 0xE9 byte as aiohttp decodes it
        "Bearer \u00e9",
        "Bearer {token}\r",
        "Bearer {token}\n",
        "Bearer {token}\x00",
        "Bearer {token} {token}",
        "Bearer {token},{token}",
        "Bearer\t{token}",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "{token}",
        "Bearer {token}\u00a0",
        "Bearer \u2028{token}",
        "Bearer a.b",
        "Bearer a.b.c.d.e",
    ],
    ids=lambda header: repr(header)[:40],
)
async def test_malformed_authorization_values_are_refused(key, header):
    token = sign(claims(), key, kid="k1")
    detail = await refused(verifier(public_jwk(key, "k1")), header.replace("{token}", token))
    assert token not in detail


@pytest.mark.parametrize("header", ["bearer {token}", "BEARER {token}", "Bearer   {token}"])
async def test_scheme_case_and_spaces_are_accepted(key, header):
    token = sign(claims(), key, kid="k1")
    assert await verifier(public_jwk(key, "k1")).authenticate(header.replace("{token}", token))


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("customers:read\u00a0customers:pii", set()),
        ("customers:read\tcustomers:pii", set()),
        ("customers:read\ncustomers:pii", set()),
        ("customers:read\u2003customers:pii", set()),
        ("customers:read\u3000customers:pii", set()),
        ("customers:read customers:pii", {"customers:read", "customers:pii"}),
        ("customers:read  customers:pii ", {"customers:read", "customers:pii"}),
        ("customers:read customers:p\u0131i", {"customers:read"}),
        (["customers:read", "customers:pii\u200b", 7], {"customers:read"}),
    ],
    ids=[
        "nbsp",
        "tab",
        "newline",
        "em-space",
        "ideographic-space",
        "space",
        "spaces",
        "dotless-i",
        "list",
    ],
)
async def test_scopes_split_on_single_spaces_only(key, scope, expected):
    token = sign(claims(scope=scope), key, kid="k1")
    principal = await verifier(public_jwk(key, "k1")).authenticate(bearer(token))
    assert principal.scopes == expected


@pytest.mark.parametrize(
    ("lifetime", "accepted"), [(600, True), (601, False), (86400 * 365, False)]
)
async def test_max_token_lifetime(key, lifetime, accepted):
    now = int(claims()["iat"])
    token = bearer(sign(claims(iat=now, exp=now + lifetime), key, kid="k1"))
    check = verifier(public_jwk(key, "k1"), max_lifetime_s=600)
    if accepted:
        assert await check.authenticate(token)
    else:
        assert "longer" in await refused(check, token)


async def test_max_token_lifetime_needs_iat(key):
    token = bearer(sign(claims(iat=None), key, kid="k1"))
    assert "'iat'" in await refused(verifier(public_jwk(key, "k1"), max_lifetime_s=600), token)
    assert await verifier(public_jwk(key, "k1")).authenticate(token)  # off by default
