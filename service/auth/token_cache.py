"""Tokens already verified, so a repeated token costs a hash, not a signature check."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

import jwt

from service.auth.principal import Principal


class VerifiedTokens:
    """Principals of tokens already verified, by SHA-256 of the token (the raw token is not
    kept), until `margin_s` before their `exp`. A bounded LRU.

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
        self._entries: OrderedDict[bytes, tuple[Principal, jwt.PyJWK, float]] = OrderedDict()
        self._max_entries = max_entries
        self._margin_s = margin_s
        self._clock = clock

    def get(self, token: str, key_held: Callable[[jwt.PyJWK], bool]) -> Principal | None:
        digest = hashlib.sha256(token.encode()).digest()
        entry = self._entries.get(digest)
        if entry is None:
            return None
        principal, key, fresh_until = entry
        if self._clock() >= fresh_until or not key_held(key):
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return principal

    def put(self, token: str, principal: Principal, key: jwt.PyJWK, expires_at: float) -> None:
        fresh_until = expires_at - self._margin_s
        if self._clock() >= fresh_until:
            return
        self._entries[hashlib.sha256(token.encode()).digest()] = (principal, key, fresh_until)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
