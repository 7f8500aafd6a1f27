"""Keys, key sets and tokens (valid and hostile) for authentication tests.

Generic on purpose (the API tests reuse them): nothing here knows the app. Typical use::

    key = rsa_key()
    keys = jwks(public_jwk(key, kid="k1"))            # serve this, or static_jwks_loader(keys)
    token = sign(claims(scope="customers:read"), key, kid="k1")
    headers = {"Authorization": bearer(token)}

`claims()` gives a valid claim set for ISSUER/AUDIENCE; pass `name=None` to drop a claim.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://idp.test/realms/customers"
AUDIENCE = "customers-api"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    """A P-256 key (ES256)."""
    return ec.generate_private_key(ec.SECP256R1())


def default_alg(key: PrivateKey) -> str:
    return "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"


def public_jwk(key: PrivateKey, kid: str, alg: str | None = None, **extra: Any) -> dict[str, Any]:
    """The public half of `key` as a JWK; `alg` defaults to the key type's usual one."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "alg": alg or default_alg(key), "use": "sig", **extra}


def jwks(*keys: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(keys)}


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims (iss, aud, sub, iat, exp in 5 min) with overrides; None removes a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def sign(
    payload: dict[str, Any],
    key: PrivateKey,
    *,
    kid: str | None,
    alg: str | None = None,
    headers: dict[str, Any] | None = None,
) -> str:
    """A token signed by `key`; `kid=None` leaves the kid out of the header."""
    header = dict(headers or {})
    if kid is not None:
        header["kid"] = kid
    return jwt.encode(payload, key, algorithm=alg or default_alg(key), headers=header)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(obj: dict[str, Any]) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def unsigned_token(payload: dict[str, Any], kid: str | None = None) -> str:
    """An `alg: none` token (empty signature)."""
    header: dict[str, Any] = {"alg": "none", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    return f"{_segment(header)}.{_segment(payload)}."


def hs256_with_public_key(payload: dict[str, Any], key: PrivateKey, kid: str | None) -> str:
    """The key-confusion attack: HS256 with the victim's *public* key PEM as the secret."""
    secret = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{_segment(header)}.{_segment(payload)}"
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def tamper(token: str, **changes: Any) -> str:
    """The same header and signature over a payload with `changes` applied."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{_segment({**decoded, **changes})}.{signature}"


def bearer(token: str) -> str:
    """The Authorization header value for `token`."""
    return f"Bearer {token}"
