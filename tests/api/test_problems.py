"""The one exception-to-problem table, and the generic 500 for what nobody planned."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web

from service.api.problems import PROBLEM_OF, problem_middleware, to_problem
from service.authz.decision import PolicyEngineError
from service.cep.base import CepUnavailable
from service.customers.errors import CustomerNotFound, DuplicateCustomer, InvalidCursor
from service.errors import (
    FieldError,
    IdempotencyKeyReused,
    InvalidFields,
    Problem,
    ServiceUnavailable,
)
from service.storage.base import DatabaseUnavailable

SECRET = "52998224725 maria@example.com"


@pytest.mark.parametrize(
    ("exc", "status", "fields"),
    [
        (
            DuplicateCustomer(["email", "cpf"]),
            422,
            [("email", "already_exists"), ("cpf", "already_exists")],
        ),
        (InvalidFields([FieldError("cep", "not_found", "No.")]), 422, [("cep", "not_found")]),
        (InvalidCursor("x"), 422, [("cursor", "invalid")]),
        (CustomerNotFound(), 404, None),
        (DatabaseUnavailable(), 503, None),
        (CepUnavailable(), 503, None),
        (PolicyEngineError(), 503, None),
        (ServiceUnavailable("storage.url: no database answers"), 503, None),
    ],
)
def test_every_domain_error_has_its_problem(
    exc: Exception, status: int, fields: list[tuple[str, str]] | None
) -> None:
    assert not isinstance(exc, Problem)  # domain code raises no HTTP
    problem = to_problem(exc)
    assert problem is not None and problem.status == status
    body = problem.body()
    assert body["status"] == status and body["title"] and body["detail"]
    if fields is not None:
        assert [(e["field"], e["code"]) for e in body["errors"]] == fields
    if status == 503:
        assert int(problem.headers["Retry-After"]) > 0
        assert body["detail"] == str(exc)


def test_the_table_maps_only_exceptions_and_problems_pass_as_they_are() -> None:
    assert all(issubclass(cls, Exception) and not issubclass(cls, Problem) for cls in PROBLEM_OF)
    reused = IdempotencyKeyReused("Another body.")
    assert to_problem(reused) is reused
    assert reused.body()["code"] == "idempotency_key_reused"
    assert "code" not in Problem("x").body()
    assert to_problem(RuntimeError("boom")) is None


async def test_a_bad_cursor_is_422_on_cursor_whichever_check_sees_it(client: Any) -> None:
    by_schema = await client.get("/api/v1/customers", params={"cursor": "not-a-cursor"})
    assert by_schema.status == 422
    problem = await by_schema.json()
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [("cursor", "invalid")]
    by_decoder = to_problem(InvalidCursor("AAAAAAAAAAAAAAAA"))
    assert by_decoder is not None
    assert by_decoder.body()["errors"] == problem["errors"]


@pytest.mark.parametrize("exc", [RuntimeError(SECRET), KeyError(SECRET), ZeroDivisionError()])
async def test_an_unexpected_exception_is_a_logged_500_without_detail(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture, exc: Exception
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise exc

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/broken", broken)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR, logger="service.api.problems"):
        response = await client.get("/broken?token=abc")
    assert response.status == 500
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body == {
        "type": "https://customers-api.example/problems/internal-error",
        "title": "Internal server error",
        "status": 500,
        "detail": "An unexpected error occurred; it was logged.",
    }
    text = await response.text()
    assert SECRET not in text and "Traceback" not in text and type(exc).__name__ not in text
    [record] = [r for r in caplog.records if r.name == "service.api.problems"]
    assert record.exc_info is not None and record.exc_info[1] is exc  # the traceback is logged
    assert "GET /broken" in record.getMessage()
    assert "token=abc" not in record.getMessage()  # the path, never the query string
