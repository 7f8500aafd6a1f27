"""Helpers for the hostile-input tests: a valid customer, and how many are stored."""

from __future__ import annotations

from typing import Any

import pytest

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
