"""Helpers for the hostile-input tests: the production server stack (ServiceRunner, its
options, the access logger) under the test client, a valid customer, how many are stored."""

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


VALID = {
    "name": "Maria da Silva",
    "email": "maria@example.com",
    "phone": "(11) 91234-5678",
    "cep": "01001-000",
    "cpf": "529.982.247-25",
    "number": "100",
}


async def stored_count(client: Any) -> int:
    """Customers stored, read through the API (the caller has every scope)."""
    response = await client.get("/api/v1/customers", params={"limit": "100"})
    assert response.status == 200
    return len((await response.json())["data"])


async def assert_problem(response: Any, status: int | tuple[int, ...]) -> dict[str, Any]:
    """An RFC 9457 answer with `status` (or one of them); its body."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status in statuses, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json()
    assert body["status"] == response.status
    return body


@pytest.fixture
async def stored_id(client: Any) -> str:
    """The id of one stored customer."""
    response = await client.post("/api/v1/customers", json=VALID)
    assert response.status == 201
    return str((await response.json())["id"])
