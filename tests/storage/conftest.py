"""The repository of every adapter: SQLite (a fresh file), mongomock, and a real MongoDB when
MONGODB_URL is set (skipped with its reason otherwise)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from service.storage import open_repository
from service.storage.base import CustomerRepository
from service.storage.pii import Keyring, PiiCodec


def customer(email: str = "maria@example.com", cpf: str = "52998224725") -> dict[str, Any]:
    """A customer as the domain hands it to `insert` (canonical values, no id)."""
    return {
        "name": "Maria",
        "email": email,
        "phone": "+5511912345678",
        "cpf": cpf,
        "address": {
            "cep": "01001000",
            "street": "Praça da Sé",
            "neighborhood": "Sé",
            "city": "São Paulo",
            "state": "SP",
            "number": None,
            "complement": None,
            "source": "viacep",
            "resolved_at": None,
        },
    }


# What a new customer's lifecycle fields hold.
LIFECYCLE_DEFAULTS = {
    "status": "active",
    "closed_at": None,
    "purge_after": None,
    "anonymized_at": None,
    "blocked_reason": None,
}


@pytest.fixture
def codec() -> PiiCodec:
    return PiiCodec(Keyring.generate())


@pytest.fixture(params=["sqlite", "mongomock", pytest.param("mongodb", marks=pytest.mark.mongodb)])
async def repository(
    request: pytest.FixtureRequest, tmp_path: Path, codec: PiiCodec
) -> AsyncIterator[CustomerRepository]:
    database = f"customers_test_{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'customers.db'}"
    elif request.param == "mongomock":
        url = "mongomock://"
    else:
        url = os.environ.get("MONGODB_URL", "")
        if not url:
            pytest.skip("MONGODB_URL is not set: no real MongoDB to run against")
    repo = open_repository(url, database, codec)
    await repo.ensure_schema()
    yield repo
    if request.param == "mongodb":
        await repo._client.drop_database(database)  # type: ignore[attr-defined]
    await repo.close()


@asynccontextmanager
async def reopened(repository: Any, codec: PiiCodec) -> AsyncIterator[CustomerRepository]:
    """Another repository on the same database (file or MongoDB client), with `codec`: what
    a server restarted with a new key document sees."""
    from service.storage.mongo import MongoRepository
    from service.storage.sqlite import SqliteRepository

    if isinstance(repository, SqliteRepository):
        other = SqliteRepository(repository.path, codec)
        await other.ensure_schema()
        yield other
        await other.close()
        return
    assert isinstance(repository, MongoRepository)
    database = repository._collection.database.name
    yield MongoRepository(repository._client, database, codec)  # shares (and leaves) the client


async def raw_dump(repository: Any) -> bytes:
    """Every byte the database holds: the SQLite file and its -wal/-shm, or a BSON dump of
    every collection."""
    from service.storage.sqlite import SqliteRepository

    if isinstance(repository, SqliteRepository):
        path = repository.path
        files = sorted(path.parent.glob(f"{path.name}*"))
        assert files, path
        return b"".join(file.read_bytes() for file in files)
    import bson

    database = repository._collection.database
    dump = b""
    for name in await database.list_collection_names():
        async for doc in database[name].find():
            dump += bson.encode(doc)
    return dump
