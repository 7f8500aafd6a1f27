"""Shared fixtures: settings pointing at fakes on 127.0.0.1, and the app under test.

API tests run on the embedded default, SQLite (a fresh file per test), and again on a real
MongoDB when MONGODB_URL is set (e.g. MONGODB_URL=mongodb://127.0.0.1:27017); the second
run is skipped otherwise. mongomock runs in the storage contract suite (tests/storage/).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.auth.local_issuer import issue_local_token
from service.settings import Settings, deep_merge, load_settings
from tests.fakes import FakeClock, FakeViaCep, free_port, serve


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
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[Any] = AsyncMongoClient(url)
    await client.drop_database(database)
    await client.close()


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
            "pii": {"key_file": str(tmp_path / "pii-key")},
        }
        return load_settings(environ={}, overrides=deep_merge(base, extra or {}))

    return make


ALL_SCOPES = ("customers:read", "customers:write", "customers:delete", "customers:pii")
# What a DPO adds: every status visible, the lifecycle actions.
LIFECYCLE_SCOPES = ("customers:restricted", "customers:lifecycle", "customers:anonymize")


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
        clock: Callable[[], float] = time.monotonic,
    ) -> TestClient[Any, Any]:
        settings = make_settings(extra)
        headers = {}
        if scopes is not None:
            token = issue_local_token(settings, "tester", list(scopes), list(roles), 600)
            headers["Authorization"] = f"Bearer {token}"
        client: TestClient[Any, Any] = await aiohttp_client(
            create_app(settings, clock=clock), headers=headers
        )
        return client

    return make


@pytest.fixture
async def client(make_client: Callable[..., Any]) -> TestClient[Any, Any]:
    return await make_client()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A throwaway `redis-server` on a free loopback port, for the whole session.

    Skipped (with the reason) when the binary is missing; `.ci/run` installs it.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    pytest.fail(f"redis-server did not start on port {port}: {stderr}")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied before each test (database 0)."""
    import redis

    with redis.Redis.from_url(redis_server) as client:
        client.flushall()
    return redis_server + "/0"
