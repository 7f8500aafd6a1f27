"""Tokens already verified, so a repeated token costs a hash, not a signature check."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import jwt

from service.auth.principal import Principal


def _digest(header: str) -> bytes:
    """SHA-256 of any header text (a byte that is not UTF-8 arrives as a lone surrogate)."""
    return hashlib.sha256(header.encode("utf-8", "surrogatepass")).digest()


class VerifiedTokens:
    """Principals of tokens already verified, by SHA-256 of the Authorization header that
    carried them (the raw token is not kept; the same header is the same token, so a hit
    needs neither the header's parsing nor the signature), until `margin_s` before their
    `exp`. Bounded: the oldest entry goes first (no reordering on a hit).

    An entry is used only while the key that verified it is still in the issuer's key set:
    a JWKS refresh that drops or replaces that key drops its entries. Verifying an ES256
    signature costs ~0.3 ms; a hit costs a hash and a dict lookup.
    """

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        margin_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._entries: dict[bytes, tuple[Principal, jwt.PyJWK, float]] = {}
        self._max_entries = max_entries
        self._margin_s = margin_s
        self._clock = clock

    def get(self, header: str, key_held: Callable[[jwt.PyJWK], bool]) -> Principal | None:
        digest = _digest(header)
        entry = self._entries.get(digest)
        if entry is None:
            return None
        principal, key, fresh_until = entry
        if self._clock() >= fresh_until or not key_held(key):
            del self._entries[digest]
            return None
        return principal

    def put(self, header: str, principal: Principal, key: jwt.PyJWK, expires_at: float) -> None:
        fresh_until = expires_at - self._margin_s
        if self._clock() >= fresh_until:
            return
        self._entries[_digest(header)] = (principal, key, fresh_until)
        if len(self._entries) > self._max_entries:
            del self._entries[next(iter(self._entries))]

    def __len__(self) -> int:
        return len(self._entries)
