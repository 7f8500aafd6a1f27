"""The issuer's public keys (JWKS) by `kid`, loaded without blocking the event loop.

pyjwt's `PyJWKClient` fetches with blocking urllib, so it is not used: a `JwksCache`
takes an async loader (HTTP through the app's shared `aiohttp.ClientSession`, a file,
or the local issuer's static set) and parses what it returns with `jwt.PyJWK`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from prometheus_client import Counter

from service.breaker import CircuitBreaker, CircuitOpen
from service.metrics import JWKS_OUTCOMES, Metrics

log = logging.getLogger(__name__)

JwksLoader = Callable[[], Awaitable[dict[str, Any]]]


class KeyNotFound(Exception):
    """No usable key in the issuer's set matches the token's `kid`."""


class KeysUnavailable(Exception):
    """No key set has ever been loaded: the JWKS source cannot be reached or parsed."""


def http_jwks_loader(session: aiohttp.ClientSession, url: str, timeout_s: float) -> JwksLoader:
    """Fetch the JWKS from `url` with the app's shared session."""

    async def load() -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with session.get(url, timeout=timeout) as response:
            response.raise_for_status()
            # IdPs serve application/json or application/jwk-set+json: do not insist on one.
            data = await response.json(content_type=None)
        return _as_jwks(data)

    return load


def file_jwks_loader(path: Path) -> JwksLoader:
    """Read the JWKS from a JSON file (re-read on every refresh, so it can be rotated)."""

    async def load() -> dict[str, Any]:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
        return _as_jwks(json.loads(text))

    return load


def static_jwks_loader(jwks: dict[str, Any]) -> JwksLoader:
    """A fixed key set (the local issuer's)."""

    async def load() -> dict[str, Any]:
        return jwks

    return load


def _as_jwks(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError('a JWKS must be a JSON object with a "keys" list')
    return data


def _parse_keys(jwks: dict[str, Any]) -> list[jwt.PyJWK]:
    """The signing keys pyjwt can use; others (encryption, symmetric, unknown kty) skipped."""
    keys = []
    for jwk in jwks["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") == "oct" or jwk.get("use", "sig") != "sig":
            continue
        try:
            keys.append(jwt.PyJWK(jwk))
        except jwt.PyJWTError as exc:
            log.info("skipping JWKS key kid=%r: %s", jwk.get("kid"), exc)
    if not keys:
        raise ValueError("the JWKS has no usable signing key")
    return keys


class JwksCache:
    """Keys by `kid`; an unknown `kid` refetches at most once per cooldown.

    One fetch at a time: concurrent lookups of an unknown `kid` wait for the fetch in
    flight instead of starting their own. A failed fetch keeps the last good keys (and
    still counts for the cooldown, so a down JWKS endpoint is not hammered).
    """

    def __init__(
        self,
        loader: JwksLoader,
        *,
        refresh_cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        source: str = "JWKS",
        breaker: CircuitBreaker | None = None,
        refreshes: Counter | None = None,
    ) -> None:
        """`refreshes`: `jwks_refreshes_total{outcome}` (the app's)."""
        self._loader = loader
        self._cooldown_s = refresh_cooldown_s
        self._clock = clock
        self._source = source
        self._keys: list[jwt.PyJWK] = []
        self._held: frozenset[int] = frozenset()  # ids of `_keys`, which keeps them alive
        self._last_fetch: float | None = None
        self._lock = asyncio.Lock()
        # Open after repeated failed fetches: no fetch (nor its timeout) until the cool-down.
        self._breaker = breaker or CircuitBreaker("jwks", clock=clock)
        refreshes = refreshes or Metrics.create().jwks_refreshes
        self._refreshes = {outcome: refreshes.labels(outcome) for outcome in JWKS_OUTCOMES}

    @property
    def key_count(self) -> int:
        """Usable keys held now (0 until the first token asks for one)."""
        return len(self._keys)

    async def check(self) -> None:
        """For readiness: read the source once (cool-down and breaker aside; the keys held
        are not replaced); raises when it cannot be read or has no usable key."""
        await self._load()

    async def get_key(self, kid: str | None) -> jwt.PyJWK:
        """The key for `kid`; `None` (token without kid) only when the set has one key."""
        key = self._find(kid)
        if key is not None:
            return key
        async with self._lock:
            key = self._find(kid)  # a fetch that finished while we waited may have brought it
            if key is None and self._may_fetch():
                await self._refresh()
                key = self._find(kid)
        if key is not None:
            return key
        if not self._keys:
            raise KeysUnavailable(f"no keys could be loaded from {self._source}")
        raise KeyNotFound("no key for this kid" if kid is not None else "token has no kid")

    def holds(self, key: jwt.PyJWK) -> bool:
        """Whether `key` is in the current set (a refresh replaces every key object); asked
        on every cached token, so one set lookup."""
        return id(key) in self._held

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return self._keys[0] if len(self._keys) == 1 else None
        return next((key for key in self._keys if key.key_id == kid), None)

    def _may_fetch(self) -> bool:
        return self._last_fetch is None or self._clock() - self._last_fetch >= self._cooldown_s

    async def _refresh(self) -> None:
        self._last_fetch = self._clock()
        try:
            keys = await self._breaker.call(self._load)
        except CircuitOpen:
            self._refreshes["skipped_open_breaker"].inc()
            return
        except Exception as exc:  # any failure: keep serving the last good keys
            self._refreshes["error"].inc()
            log.warning(
                "JWKS fetch from %s failed, keeping %d cached key(s): %r",
                self._source,
                len(self._keys),
                exc,
            )
            return
        self._keys = keys
        self._held = frozenset(map(id, keys))
        self._refreshes["ok"].inc()
        log.info("loaded %d key(s) from %s", len(keys), self._source)

    async def _load(self) -> list[jwt.PyJWK]:
        return _parse_keys(await self._loader())
