"""The local JWT issuer of the embedded profile.

It keeps an ES256 (P-256) private key in `auth.local_issuer.key_file`, publishes the
public half as a JWKS (verified by the same code path as an external IdP's keys) and
signs the tokens printed by `python -m service token`. It signs anything for anyone,
so the server refuses to run it on a non-loopback host unless `allow_public` says so.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from service.keyfiles import create_private_file
from service.settings import Settings, SettingsError

ALGORITHM = "ES256"

# RFC 7638 §3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url without padding)."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class LocalIssuer:
    def __init__(
        self, key_file: Path, issuer: str, audience: str, roles_claim: str = "roles"
    ) -> None:
        self.key_file = key_file
        self.issuer = issuer
        self.audience = audience
        self.roles_claim = roles_claim
        self._key: ec.EllipticCurvePrivateKey | None = None

    def load_or_create(self) -> None:
        """Load the key from `key_file`, creating it (mode 0600) if it does not exist."""
        if self._key is not None:
            return
        if not self.key_file.exists():
            _create_key_file(self.key_file)
        try:
            key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise SettingsError(
                f"auth.local_issuer.key_file: cannot load {self.key_file}: {exc}"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise SettingsError(
                f"auth.local_issuer.key_file: {self.key_file} is not an EC P-256 private key"
            )
        self._key = key

    def _private_key(self) -> ec.EllipticCurvePrivateKey:
        self.load_or_create()
        assert self._key is not None
        return self._key

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWKS: kid is its RFC 7638 thumbprint."""
        jwk = ECAlgorithm.to_jwk(self._private_key().public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": jwk_thumbprint(jwk), "alg": ALGORITHM, "use": "sig"}]}

    def issue(
        self,
        subject: str,
        scopes: Sequence[str] = (),
        roles: Sequence[str] = (),
        ttl_s: int = 3600,
    ) -> str:
        """A signed token for `subject`, valid from now for `ttl_s` seconds."""
        if not subject:
            raise ValueError("subject must not be empty")
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        if isinstance(scopes, str) or isinstance(roles, str):
            raise TypeError("scopes and roles are sequences of names, not one string")
        key = self._private_key()
        kid = self.jwks()["keys"][0]["kid"]
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "jti": secrets.token_urlsafe(16),
        }
        if scopes:
            claims["scope"] = " ".join(scopes)
        if roles:
            # A dotted claim path (`realm_access.roles`) becomes nested objects.
            *parents, leaf = self.roles_claim.split(".")
            target = claims
            for name in parents:
                target = target.setdefault(name, {})
            target[leaf] = list(roles)
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})


def _create_key_file(path: Path) -> None:
    """A new P-256 key in `path` (0600); if another process created it first, its key wins."""
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    create_private_file(path, pem)


def local_issuer_from(settings: Settings) -> LocalIssuer:
    """The local issuer configured by `settings` (whether or not it is enabled)."""
    auth = settings.auth
    return LocalIssuer(
        settings.path(auth.local_issuer.key_file),
        issuer=auth.issuer,
        audience=auth.audience,
        roles_claim=auth.roles_claim,
    )


def issue_local_token(
    settings: Settings,
    subject: str,
    scopes: Sequence[str] = (),
    roles: Sequence[str] = (),
    ttl_s: int = 3600,
) -> str:
    """A token the server started with `settings` accepts (the `token` CLI command)."""
    if not settings.auth.local_issuer.enabled:
        raise SettingsError(
            "this configuration has no local issuer (auth.local_issuer.enabled is false): "
            "get tokens from the configured identity provider"
        )
    return local_issuer_from(settings).issue(subject, scopes, roles, ttl_s)
