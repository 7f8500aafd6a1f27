"""The MongoDB adapter's driver: PyMongo's async client (not motor), and what it does with no
server. The contract itself runs on mongomock and a real MongoDB (tests/storage/conftest.py)."""

from __future__ import annotations

import pytest
from pymongo import AsyncMongoClient

from service.storage import open_repository
from service.storage.base import DatabaseUnavailable
from service.storage.mongo import MongoRepository
from service.storage.pii import Keyring, PiiCodec
from tests.fakes import free_port


async def test_mongodb_urls_get_pymongos_async_client() -> None:
    repo = open_repository("mongodb://127.0.0.1:27017", "customers", PiiCodec(Keyring.generate()))
    assert isinstance(repo, MongoRepository)
    assert isinstance(repo._client, AsyncMongoClient)
    await repo.close()


async def test_no_server_is_database_unavailable_and_closes_cleanly() -> None:
    url = f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=200"
    repo = open_repository(url, "customers", PiiCodec(Keyring.generate()))
    with pytest.raises(DatabaseUnavailable):
        await repo.ensure_schema()
    with pytest.raises(DatabaseUnavailable):
        await repo.get("0" * 24)
    await repo.close()
