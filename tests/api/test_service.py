"""Health probes, OpenAPI document, Swagger UI, and behaviour when the database is down."""

import logging
import sqlite3
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pymongo import AsyncMongoClient

from service.api.access_log import AccessLogger
from service.storage.base import DatabaseUnavailable
from service.storage.group_commit import GroupCommitWriter
from service.storage.sqlite import SqliteRepository
from service.typedefs import repository_key
from tests.factories import VALID_BODY, assert_problem


@pytest.fixture
async def database_down(client, monkeypatch, tmp_path):
    """Make the running app's database unreachable: MongoDB at a port where none listens;
    SQLite connections to a file another connection holds an exclusive lock on."""
    repository = client.app[repository_key]
    if isinstance(repository, SqliteRepository):
        holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("CREATE TABLE t (x)")  # takes and keeps the exclusive lock
        dead = sqlite3.connect(tmp_path / "locked.db", timeout=0, check_same_thread=False)
        writer = GroupCommitWriter(
            lambda: sqlite3.connect(tmp_path / "locked.db", timeout=0, check_same_thread=False),
            guard=lambda exc: DatabaseUnavailable(),
        )
        monkeypatch.setattr(repository, "_reader", dead)
        monkeypatch.setattr(repository, "_writer", writer)
        yield
        monkeypatch.undo()
        await writer.close()
        dead.close()
        holder.close()
        return
    client_: AsyncMongoClient[Any] = AsyncMongoClient(
        "mongodb://127.0.0.1:1", serverSelectionTimeoutMS=100
    )
    monkeypatch.setattr(repository, "_client", client_)
    monkeypatch.setattr(repository, "_collection", client_["customers"]["customers"])
    yield
    await client_.close()


async def test_liveness_and_readiness(client):
    assert (await client.get("/health/live")).status == 200
    ready = await client.get("/health/ready")
    assert ready.status == 200
    body = await ready.json()
    assert body["status"] == "ok"
    assert {name: check["state"] for name, check in body["checks"].items()} == {
        "storage": "ok",
        "storage_writes": "ok",
        "policy_engine": "ok",
        "jwks": "ok",
        "cep:viacep": "ok",
        "cep:offline": "ok",
        "cep_cache": "ok",
    }
    assert body["breakers"] == {"cep:offline": "closed", "cep:viacep": "closed", "jwks": "closed"}


async def test_readiness_names_the_dependency_that_is_down(client, database_down):
    ready = await client.get("/health/ready")
    assert ready.status == 503
    assert (await ready.json())["checks"]["storage"]["state"] == "down"
    assert (await client.get("/health/live")).status == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/customers", VALID_BODY),
        ("GET", "/api/v1/customers", None),
        ("GET", "/api/v1/customers/0123456789abcdef01234567", None),
    ],
)
async def test_database_down_is_503_not_500(client, database_down, method, path, body):
    response = await client.request(method, path, json=body)
    await assert_problem(response, 503)
    assert "Retry-After" in response.headers


async def test_metrics_count_requests_by_route_template_not_by_id(client):
    await client.get("/api/v1/customers")
    await client.get("/api/v1/customers/0123456789abcdef01234567")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    assert 'http_requests_total{method="GET",route="/api/v1/customers",status="200"} 1.0' in text
    assert (
        'http_requests_total{method="GET",route="/api/v1/customers/{customer_id}",status="404"} 1.0'
        in text
    )
    assert "0123456789abcdef01234567" not in text
    assert "http_request_duration_seconds_bucket" in text


def test_access_log_leaves_out_the_query_string(caplog):
    logger = logging.getLogger("test.access")
    request = make_mocked_request("GET", "/api/v1/customers?cpf=52998224725&email=a%40b.com")
    with caplog.at_level("INFO", logger="test.access"):
        AccessLogger(logger, "").log(request, web.Response(status=200), 0.0123)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == "GET - 200 12.3ms"  # a mocked request matched no route
    assert "52998224725" not in line and "b.com" not in line
