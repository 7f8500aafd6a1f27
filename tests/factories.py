"""Test data that is valid by construction, and the one check of a problem answer."""

from __future__ import annotations

from typing import Any

from service.storage.base import Change

# The one valid registration body (its email in mixed case: stored lower-cased).
VALID_BODY = {
    "name": "Maria da Silva",
    "email": "Maria.Silva@Example.COM",
    "phone": "(11) 91234-5678",
    "cep": "01001-000",
    "cpf": "529.982.247-25",
    "number": "100",
}


def make_cpf(base: int) -> str:
    """A valid CPF (check digits per the Receita Federal rule) from a 9-digit base."""
    digits = [int(d) for d in f"{base:09d}"]
    for length in (9, 10):
        total = sum(d * w for d, w in zip(digits, range(length + 1, 1, -1), strict=True))
        digits.append(0 if total % 11 < 2 else 11 - total % 11)
    return "".join(map(str, digits))


def change(action: str = "create", actor: str = "tester", fields: tuple[str, ...] = ()) -> Change:
    """The journal of a write a test makes (who and what, never values)."""
    return Change.of(action, actor, request_id="test-request", fields=fields)


# Distinct valid CPFs; the first two are well-known examples used by name in tests.
CPFS = [make_cpf(529982247), make_cpf(111444777)] + [
    make_cpf(100_000_000 + 7919 * i) for i in range(1, 29)
]


def customer_body(i: int, **changes: Any) -> dict[str, Any]:
    """The valid body with the email and CPF of customer `i` (each distinct)."""
    return {**VALID_BODY, "email": f"c{i}@example.com", "cpf": CPFS[i], **changes}


async def assert_problem(response: Any, status: int | tuple[int, ...]) -> dict[str, Any]:
    """An RFC 9457 answer with `status` (or one of them); its body."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status in statuses, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json()
    assert body["status"] == response.status
    return body
