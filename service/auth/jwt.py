"""Bearer JWT authentication: `Authorization: Bearer <token>` → a verified `Principal`.

The token's header is read first (unverified) only to choose: its `alg` must be in the
allow-list (asymmetric algorithms only) and must be the algorithm of the key its `kid`
names; then pyjwt verifies signature, `iss`, `aud`, `exp`, `nbf` with that one algorithm.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt

from service.auth.jwks import (
    JwksCache,
    JwksLoader,
    KeyNotFound,
    KeysUnavailable,
    file_jwks_loader,
    http_jwks_loader,
    static_jwks_loader,
)
from service.auth.local_issuer import check_local_issuer_allowed, local_issuer_from
from service.breaker import CircuitBreaker
from service.errors import ServiceUnavailable, Unauthenticated
from service.settings import Settings, SettingsError

JWKS_TIMEOUT_S = 5.0
_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]


@dataclass(frozen=True)
class Principal:
    """Who is calling, from verified claims only (never the raw token)."""

    subject: str
    scopes: frozenset[str]
    roles: frozenset[str]
    issuer: str


def _is_symmetric(algorithm: str) -> bool:
    return algorithm.lower() == "none" or algorithm.upper().startswith("HS")


class TokenVerifier:
    def __init__(
        self,
        jwks: JwksCache,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str],
        leeway_s: float = 30,
        roles_claim: str = "roles",
    ) -> None:
        unsafe = [alg for alg in algorithms if _is_symmetric(alg)]
        if unsafe:
            raise ValueError(f"algorithms {unsafe} are not allowed: asymmetric algorithms only")
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._algorithms = frozenset(algorithms)
        self._leeway_s = leeway_s
        self._roles_path = roles_claim.split(".")

    async def authenticate(self, authorization_header: str | None) -> Principal:
        """The principal of a valid bearer token; `Unauthenticated` (401) otherwise.

        `ServiceUnavailable` (503) when the issuer's keys have never been loadable.
        """
        if authorization_header is None:
            raise Unauthenticated("This request needs a bearer token.", error=None)
        token = _bearer_token(authorization_header)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("The token is not a well-formed JWT.") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise Unauthenticated("The token's signing algorithm is not accepted.")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("The token's key id is malformed.")
        try:
            key = await self._jwks.get_key(kid)
        except KeyNotFound:
            raise Unauthenticated("The token was not signed by a known key.") from None
        except KeysUnavailable:
            raise ServiceUnavailable("The token issuer's keys cannot be fetched now.") from None
        if key.algorithm_name != alg:
            raise Unauthenticated("The token's algorithm does not match its signing key.")
        claims = self._decode(token, key, alg)
        return Principal(
            subject=claims["sub"],
            scopes=_scopes(claims),
            roles=_roles(claims, self._roles_path),
            issuer=claims["iss"],
        )

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            detail = "The token has expired."
        except jwt.ImmatureSignatureError:
            detail = "The token is not valid yet."
        except jwt.InvalidAudienceError:
            detail = "The token is not meant for this API (audience)."
        except jwt.InvalidIssuerError:
            detail = "The token was not issued by the accepted issuer."
        except jwt.MissingRequiredClaimError as exc:
            detail = f"The token lacks the required claim {exc.claim!r}."
        except jwt.InvalidSignatureError:
            detail = "The token's signature is invalid."
        except jwt.PyJWTError:
            detail = "The token is invalid."
        raise Unauthenticated(detail)


def _bearer_token(header: str) -> str:
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        raise Unauthenticated("Only bearer tokens are accepted (Authorization: Bearer <token>).")
    if not token or " " in token:
        raise Unauthenticated("The Authorization header has no well-formed bearer token.")
    return token


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    """OAuth 2 `scope` (space-separated) or, failing that, `scp` (list or string)."""
    value = claims.get("scope", claims.get("scp"))
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str))
    return frozenset()


def _roles(claims: dict[str, Any], path: Sequence[str]) -> frozenset[str]:
    """A list of strings at a dotted claim path (`roles`, `realm_access.roles`)."""
    value: Any = claims
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    if not isinstance(value, list):
        return frozenset()
    return frozenset(item for item in value if isinstance(item, str))


def build_token_verifier(
    settings: Settings,
    session: aiohttp.ClientSession,
    *,
    clock: Callable[[], float] = time.monotonic,
    breaker: CircuitBreaker | None = None,
) -> TokenVerifier:
    """The verifier for `settings`, with the key source it names.

    Local issuer enabled → its own public key (created if missing); else `auth.jwks_url`:
    an http(s) URL fetched with `session`, or a JSON file path.
    """
    auth = settings.auth
    if not auth.issuer:
        raise SettingsError("auth.issuer: must be set (the `iss` tokens must carry)")
    loader: JwksLoader
    if auth.local_issuer.enabled:
        check_local_issuer_allowed(settings)
        if "ES256" not in auth.algorithms:
            raise SettingsError("auth.algorithms: must include ES256 for the local issuer")
        loader = static_jwks_loader(local_issuer_from(settings).jwks())
        source = f"local issuer key {settings.path(auth.local_issuer.key_file)}"
    elif auth.jwks_url.startswith(("http://", "https://")):
        loader = http_jwks_loader(session, auth.jwks_url, JWKS_TIMEOUT_S)
        source = auth.jwks_url
    elif auth.jwks_url:
        path = settings.path(auth.jwks_url)
        if not path.is_file():
            raise SettingsError(f"auth.jwks_url: {path} is neither an http(s) URL nor a file")
        loader = file_jwks_loader(path)
        source = str(path)
    else:
        raise SettingsError(
            "auth.jwks_url: must be an http(s) URL or a file path when "
            "auth.local_issuer.enabled is false"
        )
    jwks = JwksCache(
        loader,
        refresh_cooldown_s=auth.jwks_refresh_cooldown_s,
        clock=clock,
        source=source,
        breaker=breaker,
    )
    return TokenVerifier(
        jwks,
        issuer=auth.issuer,
        audience=auth.audience,
        algorithms=auth.algorithms,
        leeway_s=auth.leeway_s,
        roles_claim=auth.roles_claim,
    )
