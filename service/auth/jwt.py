"""Bearer JWT authentication: `Authorization: Bearer <token>` → a verified `Principal`.

The token's header is read first (unverified) only to choose: its `alg` must be in the
allow-list (asymmetric algorithms only) and must be the algorithm of the key its `kid`
names; then pyjwt verifies signature, `iss`, `aud`, `exp`, `nbf` with that one algorithm.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeGuard

import aiohttp
import jwt
from prometheus_client import Counter

from service.auth.jwks import (
    JwksCache,
    JwksLoader,
    KeyNotFound,
    KeysUnavailable,
    file_jwks_loader,
    http_jwks_loader,
    static_jwks_loader,
)
from service.auth.local_issuer import local_issuer_from
from service.auth.principal import Principal
from service.auth.token_cache import VerifiedTokens
from service.breaker import CircuitBreaker
from service.errors import ServiceUnavailable, Unauthenticated
from service.settings import Settings

JWKS_TIMEOUT_S = 5.0
_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
_TIME_CLAIMS = ("exp", "nbf", "iat")
# RFC 6750 `Bearer 1*SP b64token`, the token a JWS in compact form; nothing else, no other bytes.
# (An empty signature passes here: `alg: none` is refused by name a step later.)
_BEARER = re.compile(r"(?i:bearer) +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)")
# RFC 6749 scope-token: printable ASCII but space, `"` and `\`.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


class MalformedClaim(jwt.InvalidTokenError):
    """A claim of the wrong type; the message names the claim, never its value."""


def _refuse_duplicate_claims(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    claims = dict(pairs)
    if len(claims) != len(pairs):
        raise MalformedClaim("The token names a claim twice.")
    return claims


def _refuse_constant(name: str) -> NoReturn:
    raise MalformedClaim("The token's claims are not JSON.")


class _StrictJWT(jwt.PyJWT):
    """pyjwt, but claims are strict JSON with the types RFC 7519 gives them, checked before
    pyjwt reads them (it takes `int("1700000000")`, and `int(1e999)` raises OverflowError)."""

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        try:
            claims = json.loads(
                decoded["payload"],
                object_pairs_hook=_refuse_duplicate_claims,
                parse_constant=_refuse_constant,
            )
        except (ValueError, RecursionError):
            raise jwt.DecodeError("The token's claims are not JSON.") from None
        if not isinstance(claims, dict):
            raise jwt.DecodeError("The token's claims are not a JSON object.")
        for name in _TIME_CLAIMS:
            value = claims.get(name)
            if name in claims and not (_is_number(value) and math.isfinite(value)):
                raise MalformedClaim(f"The token's {name!r} claim is not a number.")
        subject = claims.get("sub")
        if "sub" in claims and not (isinstance(subject, str) and subject.strip()):
            raise MalformedClaim("The token's 'sub' claim is not a non-empty string.")
        if isinstance(subject, str) and not subject.isprintable():
            raise MalformedClaim("The token's 'sub' claim is not printable text.")
        return claims


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


_decoder = _StrictJWT()


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
        max_lifetime_s: int = 0,
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
        self._max_lifetime_s = max_lifetime_s
        self.verified = VerifiedTokens()

    @property
    def jwks(self) -> JwksCache:
        return self._jwks

    async def authenticate(self, authorization_header: str | None) -> Principal:
        """The principal of a valid bearer token; `Unauthenticated` (401) otherwise.

        `ServiceUnavailable` (503) when the issuer's keys have never been loadable.
        """
        if authorization_header is None:
            raise Unauthenticated("This request needs a bearer token.", error=None)
        cached = self.verified.get(authorization_header, self._jwks.holds)
        if cached is not None:
            return cached
        token = _bearer_token(authorization_header)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("The token is not a well-formed JWT.") from None
        if "crit" in header:  # extensions we do not implement must not be ignored (RFC 7515)
            raise Unauthenticated("The token uses critical header extensions.")
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
        self._check_lifetime(claims)
        principal = Principal(
            subject=claims["sub"],
            scopes=_scopes(claims),
            roles=_roles(claims, self._roles_path),
            issuer=claims["iss"],
        )
        self.verified.put(authorization_header, principal, key, claims["exp"])
        return principal

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        """With `auth.max_token_lifetime_s` set, `exp - iat` must be within it (so `iat`
        is required): a stolen long-lived token is refused even before it expires."""
        if not self._max_lifetime_s:
            return
        if "iat" not in claims:
            raise Unauthenticated("The token lacks the required claim 'iat'.")
        if claims["exp"] - claims["iat"] > self._max_lifetime_s:
            raise Unauthenticated("The token lives longer than this API accepts.")

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        try:
            return _decoder.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": _REQUIRED_CLAIMS, "enforce_minimum_key_length": True},
            )
        except MalformedClaim as exc:
            detail = str(exc)
        except jwt.InvalidKeyError:
            detail = "The token's signing key is too weak."
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
    """The JWS of `Bearer <token>`; any other shape or byte (non-ASCII, CR, a second token)
    is a 401 before any parser sees it."""
    match = _BEARER.fullmatch(header.strip(" "))
    if match is None:
        if not header.strip(" ").lower().startswith("bearer "):
            raise Unauthenticated(
                "Only bearer tokens are accepted (Authorization: Bearer <token>)."
            )
        raise Unauthenticated("The Authorization header has no well-formed bearer token.")
    return match[1]


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    """OAuth 2 `scope` or, failing that, `scp` (list or string). A string is split on single
    spaces only (RFC 6749): `"customers:read\u00a0customers:pii"` is one unknown scope, not
    two. Items that are not RFC 6749 scope tokens are dropped."""
    value = claims.get("scope", claims.get("scp"))
    items = value.split(" ") if isinstance(value, str) else value
    if not isinstance(items, list):
        return frozenset()
    return frozenset(
        item for item in items if isinstance(item, str) and _SCOPE_TOKEN.fullmatch(item)
    )


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
    jwks_refreshes: Counter | None = None,
) -> TokenVerifier:
    """The verifier for `settings` (checked by the loader), with the key source it names.

    Local issuer enabled → its own public key (created if missing); else `auth.jwks_url`:
    an http(s) URL fetched with `session`, or a JSON file path.
    """
    auth = settings.auth
    loader: JwksLoader
    if auth.local_issuer.enabled:
        loader = static_jwks_loader(local_issuer_from(settings).jwks())
        source = f"local issuer key {settings.path(auth.local_issuer.key_file)}"
    elif auth.jwks_url.startswith(("http://", "https://")):
        loader = http_jwks_loader(session, auth.jwks_url, JWKS_TIMEOUT_S)
        source = auth.jwks_url
    else:  # a file (the loader checked it is there)
        path = settings.path(auth.jwks_url)
        loader = file_jwks_loader(path)
        source = str(path)
    jwks = JwksCache(
        loader,
        refresh_cooldown_s=auth.jwks_refresh_cooldown_s,
        clock=clock,
        source=source,
        breaker=breaker,
        refreshes=jwks_refreshes,
    )
    return TokenVerifier(
        jwks,
        issuer=auth.issuer,
        audience=auth.audience,
        algorithms=auth.algorithms,
        leeway_s=auth.leeway_s,
        roles_claim=auth.roles_claim,
        max_lifetime_s=auth.max_token_lifetime_s,
    )
