"""Shared fixtures: settings pointing at fakes on 127.0.0.1, and the app under test.

API tests run on the embedded default, SQLite (a fresh file per test), and again on a real
MongoDB when MONGODB_URL is set (e.g. MONGODB_URL=mongodb://127.0.0.1:27017); the second
run is skipped otherwise. mongomock runs in the storage contract suite (tests/storage/).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.auth.local_issuer import issue_local_token
from service.settings import Settings, deep_merge, load_settings
from tests.fakes import FakeViaCep, serve


@pytest.fixture(
    params=["sqlite", pytest.param("mongodb", marks=pytest.mark.mongodb)],
)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {"url": f"sqlite:///{tmp_path / 'customers.db'}", "database": "customers"}
        return
    url = os.environ.get("MONGODB_URL")
    if not url:
        pytest.skip("MONGODB_URL is not set: no real MongoDB to run against")
    database = f"customers_test_{uuid.uuid4().hex[:12]}"
    yield {"url": url, "database": database}
    from motor.motor_asyncio import AsyncIOMotorClient

    client: Any = AsyncIOMotorClient(url)
    await client.drop_database(database)
    client.close()


@pytest.fixture
async def viacep(aiohttp_server: Any) -> FakeViaCep:
    fake = FakeViaCep()
    await serve(aiohttp_server, fake)
    return fake


@pytest.fixture
def make_settings(
    tmp_path: Path, viacep: FakeViaCep, storage: dict[str, str]
) -> Callable[..., Settings]:
    """Settings as `config/default.yaml`, but on the fakes; `extra` is layered on top."""

    def make(extra: dict[str, Any] | None = None) -> Settings:
        base = {
            "storage": storage,
            "cep": {"viacep": {"base_url": viacep.base_url, "timeout_s": 1.0}},
            "auth": {"local_issuer": {"key_file": str(tmp_path / "issuer-key.pem")}},
        }
        return load_settings(environ={}, overrides=deep_merge(base, extra or {}))

    return make


ALL_SCOPES = ("customers:read", "customers:write", "customers:delete", "customers:pii")


@pytest.fixture
async def make_client(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> Callable[..., Any]:
    """A client of a fresh app; by default it sends a local-issuer token with `scopes`."""

    async def make(
        extra: dict[str, Any] | None = None,
        *,
        scopes: Sequence[str] | None = ALL_SCOPES,
        roles: Sequence[str] = (),
    ) -> TestClient[Any, Any]:
        settings = make_settings(extra)
        headers = {}
        if scopes is not None:
            token = issue_local_token(settings, "tester", list(scopes), list(roles), 600)
            headers["Authorization"] = f"Bearer {token}"
        client: TestClient[Any, Any] = await aiohttp_client(create_app(settings), headers=headers)
        return client

    return make


@pytest.fixture
async def client(make_client: Callable[..., Any]) -> TestClient[Any, Any]:
    return await make_client()  # type: ignore[no-any-return]
