"""Helpers for the hostile-input tests: the production server stack (ServiceRunner, its
options, the access logger) under the test client, and how many customers are stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.api.access_log import AccessLogger
from service.api.protocol import ServiceRunner, server_options
from service.app import create_app
from service.auth.local_issuer import issue_local_token
from service.settings import Settings
from tests.conftest import ALL_SCOPES
from tests.factories import VALID_BODY


class ServiceTestServer(TestServer):
    """aiohttp's test server, on the runner `python -m service serve` uses, with its options
    (aiohttp's TestServer drops the keyword arguments of its constructor)."""

    def __init__(self, app: Any, **runner_options: Any) -> None:
        super().__init__(app)
        self._runner_options = runner_options

    async def _make_runner(self, **kwargs: Any) -> ServiceRunner:
        return ServiceRunner(self.app, **self._runner_options, **kwargs)


@pytest.fixture
async def client(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> TestClient[Any, Any]:
    """A client with every scope, talking to the production server stack."""
    settings = make_settings()
    token = issue_local_token(settings, "tester", list(ALL_SCOPES), [], 600)
    server = ServiceTestServer(
        create_app(settings), access_log_class=AccessLogger, **server_options(settings)
    )
    result: TestClient[Any, Any] = await aiohttp_client(
        server, headers={"Authorization": f"Bearer {token}"}
    )
    return result


async def stored_count(client: Any) -> int:
    """Customers stored, read through the API (the caller has every scope)."""
    response = await client.get("/api/v1/customers", params={"limit": "100"})
    assert response.status == 200
    return len((await response.json())["data"])


@pytest.fixture
async def stored_id(client: Any) -> str:
    """The id of one stored customer."""
    response = await client.post("/api/v1/customers", json=VALID_BODY)
    assert response.status == 201
    return str((await response.json())["id"])
