"""CEP resolution: providers in order, cached answers, one lookup in flight per CEP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp
from aiocache import Cache
from aiocache.base import BaseCache

from service.breaker import Breakers, CircuitOpen
from service.cep.base import Address, CepProvider, CepUnavailable, ProviderError
from service.cep.brasilapi import BrasilApiProvider
from service.cep.offline import OfflineProvider, resolve_db_path
from service.cep.viacep import ViaCepProvider
from service.metrics import CACHE_RESULTS, CEP_OUTCOMES, Metrics
from service.settings import CepSettings

log = logging.getLogger(__name__)

CACHE_KEY_PREFIX = "cep:v1:"

ProviderFactory = Callable[[CepSettings, aiohttp.ClientSession, Path], CepProvider]

PROVIDERS: dict[str, ProviderFactory] = {
    "viacep": lambda s, session, _: ViaCepProvider(s.viacep, session),
    "brasilapi": lambda s, session, _: BrasilApiProvider(s.brasilapi, session),
    "offline": lambda s, _, base_dir: OfflineProvider(resolve_db_path(s.offline, base_dir)),
}


class CepResolver:
    """Resolves a normalized CEP to an Address (or None: it does not exist).

    Providers are tried in order; one that fails (ProviderError) is skipped, and so is one
    whose circuit breaker (`cep:<name>`) is open after repeated failures: a hung provider
    costs its timeout a few times per cool-down, not on every lookup. A found address ends
    the search; so does a "does not exist" from an authoritative provider. When no provider
    could say either, CepUnavailable is raised and nothing is cached.
    """

    def __init__(
        self,
        providers: Sequence[CepProvider],
        cache: BaseCache,
        *,
        ttl_found_s: int,
        ttl_missing_s: int,
        breakers: Breakers,
        metrics: Metrics | None = None,
    ) -> None:
        """`cache` is an aiocache cache; a TTL of 0 means that kind of answer is not cached.
        `metrics`: where provider outcomes and cache reads are counted (the app's)."""
        self.providers = tuple(providers)
        self._breakers = {p.name: breakers.get(f"cep:{p.name}") for p in self.providers}
        self._cache = cache
        self._ttl_found_s = ttl_found_s
        self._ttl_missing_s = ttl_missing_s
        self._inflight: dict[str, asyncio.Task[Address | None]] = {}
        metrics = metrics or Metrics.create()
        self._lookups = {
            (p.name, outcome): metrics.cep_lookups.labels(p.name, outcome)
            for p in self.providers
            for outcome in CEP_OUTCOMES
        }
        self._cache_reads = {result: metrics.cep_cache.labels(result) for result in CACHE_RESULTS}

    async def resolve(self, cep: str) -> Address | None:
        """`cep` is already normalized (8 digits). Raises CepUnavailable."""
        hit, cached = await self._cache_get(cep)
        if hit:  # most lookups: answered without a task
            return cached
        task = self._inflight.get(cep)
        if task is None:
            task = asyncio.create_task(self._lookup(cep), name=f"cep-lookup-{cep}")
            self._inflight[cep] = task
            task.add_done_callback(lambda _: self._inflight.pop(cep, None))
        # shield: a caller that is cancelled must not cancel the lookup the others wait for
        # (and if every caller went away, shield still marks the task's exception retrieved).
        return await asyncio.shield(task)

    async def _lookup(self, cep: str) -> Address | None:
        # Read again, uncounted (the caller's read was counted): a lookup that ended while
        # this caller read the cache has stored its answer, and must not be repeated.
        hit, cached = await self._cache_get(cep, counted=False)
        if hit:
            return cached
        failed = False
        for provider in self.providers:
            try:
                address = await self._breakers[provider.name].call(
                    lambda: provider.lookup(cep),  # noqa: B023 (awaited in this iteration)
                    ProviderError,
                )
            except CircuitOpen:
                self._lookups[provider.name, "skipped_open_breaker"].inc()
                failed = True  # skipped without a call: it kept failing until a moment ago
                continue
            except ProviderError as exc:
                self._lookups[provider.name, "error"].inc()
                log.warning("CEP provider %s failed for %s: %s", provider.name, cep, exc)
                failed = True
                continue
            self._lookups[provider.name, "not_found" if address is None else "found"].inc()
            if address is not None or provider.authoritative:
                await self._cache_set(cep, address)
                return address
        if failed:
            raise CepUnavailable()
        await self._cache_set(cep, None)  # every provider answered: none has it
        return None

    async def _cache_get(self, cep: str, *, counted: bool = True) -> tuple[bool, Address | None]:
        """(hit, answer): a hit with None is a cached "does not exist"."""
        try:
            value = await self._cache.get(CACHE_KEY_PREFIX + cep)
        except Exception as exc:  # any backend failure: fall through to the providers
            log.warning("CEP cache read failed: %s: %s", type(exc).__name__, exc)
            if counted:
                self._cache_reads["error"].inc()
            return False, None
        if counted:
            self._cache_reads["miss" if value is None else "hit"].inc()
        if value is None:
            return False, None
        try:
            data = value["address"]
            return True, None if data is None else Address.from_dict(data)
        except (TypeError, KeyError, ValueError):
            log.warning("CEP cache entry for %s is not readable; ignoring it", cep)
            return False, None

    async def _cache_set(self, cep: str, address: Address | None) -> None:
        ttl = self._ttl_missing_s if address is None else self._ttl_found_s
        if ttl <= 0:
            return
        value = {"address": None if address is None else address.as_dict()}
        try:
            await self._cache.set(CACHE_KEY_PREFIX + cep, value, ttl=ttl)
        except Exception as exc:  # the answer is good even if it could not be kept
            log.warning("CEP cache write failed: %s: %s", type(exc).__name__, exc)

    async def check_cache(self) -> None:
        """For readiness: one read of the cache; raises what the backend raises."""
        await self._cache.exists(CACHE_KEY_PREFIX + "readiness")

    async def close(self) -> None:
        """Cancel lookups in flight, then close the providers and the cache."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for provider in self.providers:
            await provider.close()
        await self._cache.close()


def build_providers(
    settings: CepSettings, session: aiohttp.ClientSession, base_dir: Path
) -> list[CepProvider]:
    """The configured providers, in order (the loader checked every name is known)."""
    return [PROVIDERS[name](settings, session, base_dir) for name in settings.providers]


def build_cep_resolver(
    settings: CepSettings,
    session: aiohttp.ClientSession,
    *,
    offline_base_dir: Path,
    breakers: Breakers,
    metrics: Metrics | None = None,
) -> CepResolver:
    """The resolver the app keeps for its lifetime; `close()` it on shutdown.

    `session` is the application's one ClientSession (not closed here); relative
    `cep.offline.db_path` values are taken from `offline_base_dir`.
    """
    # connects lazily: nothing to close on error; the loader checked redis:// has its extra
    cache = Cache.from_url(settings.cache.url)
    if isinstance(cache, Cache.MEMORY):
        # A dict in this process cannot hang: no per-call timeout (aiocache's costs a task).
        cache.timeout = None
    return CepResolver(
        build_providers(settings, session, offline_base_dir),
        cache,
        ttl_found_s=settings.cache.ttl_found_s,
        ttl_missing_s=settings.cache.ttl_missing_s,
        breakers=breakers,
        metrics=metrics,
    )
