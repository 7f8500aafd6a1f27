"""The MongoDB adapter's driver: PyMongo's async client (not motor), and what it does with no
server. The contract itself runs on mongomock and a real MongoDB (tests/storage/conftest.py)."""

from __future__ import annotations

import asyncio
import gc
import socket
import warnings
from collections.abc import Awaitable, Callable

import pytest
from pymongo import AsyncMongoClient

from service.storage import open_repository
from service.storage.base import DatabaseUnavailable
from service.storage.mongo import MongoRepository
from service.storage.pii import Keyring, PiiCodec


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_without_leaking_sockets(body: Callable[[], Awaitable[None]]) -> None:
    """Run `body` on a loop of its own, then collect the sockets PyMongo's async pool leaks
    when a connect is cancelled by `close()` (PYTHON-3923). The loop holds them until it is
    closed, so only after `asyncio.run` can they be collected, here rather than as a
    ResourceWarning in whichever test runs next."""
    asyncio.run(body())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_mongodb_urls_get_pymongos_async_client() -> None:
    async def body() -> None:
        repo = open_repository(
            "mongodb://127.0.0.1:27017", "customers", PiiCodec(Keyring.generate())
        )
        assert isinstance(repo, MongoRepository)
        assert isinstance(repo._client, AsyncMongoClient)
        await repo.close()

    run_without_leaking_sockets(body)


def test_no_server_is_database_unavailable_and_closes_cleanly() -> None:
    async def body() -> None:
        url = f"mongodb://127.0.0.1:{_closed_port()}/?serverSelectionTimeoutMS=200"
        repo = open_repository(url, "customers", PiiCodec(Keyring.generate()))
        with pytest.raises(DatabaseUnavailable):
            await repo.ensure_schema()
        with pytest.raises(DatabaseUnavailable):
            await repo.get("0" * 24)
        await repo.close()

    run_without_leaking_sockets(body)
