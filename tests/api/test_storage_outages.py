"""Storage outages are loud (finding #9 of the third review): a write that fails logs its
cause at ERROR (then WARNING, bounded), readiness shows `storage_writes` down (degraded)
while writes fail, and both clear once a write succeeds. The disk is really full here:
SQLite's `max_page_count` on the writer's connection makes every new page SQLITE_FULL."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from service.api.health import MAX_AGE_S
from service.storage.sqlite import SqliteRepository
from service.typedefs import repository_key
from tests.factories import VALID_BODY as MARIA
from tests.factories import make_cpf
from tests.fakes import FakeClock


def body(i: int) -> dict[str, Any]:
    return {**MARIA, "email": f"full{i}@example.com", "cpf": make_cpf(300_000_000 + 7919 * i)}


async def _fill_disk(repository: SqliteRepository) -> None:
    def cap(connection: Any) -> None:
        (pages,) = connection.execute("PRAGMA page_count").fetchone()
        connection.execute(f"PRAGMA max_page_count = {pages}")

    await repository._write(cap)


async def _free_disk(repository: SqliteRepository) -> None:
    await repository._write(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))


@pytest.fixture
async def full(make_client: Any, caplog: pytest.LogCaptureFixture) -> Any:
    clock = FakeClock()
    client = await make_client(clock=clock)
    repository = client.app[repository_key]
    if not isinstance(repository, SqliteRepository):
        pytest.skip("a full disk is simulated on SQLite (MongoDB: mongomock never fails)")
    await _fill_disk(repository)
    return client, repository, clock


async def test_a_full_disk_is_logged_with_its_cause_and_degrades_readiness(
    full: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, repository, clock = full
    statuses = []
    with caplog.at_level(logging.WARNING):
        for i in range(60):
            statuses.append((await client.post("/api/v1/customers", json=body(i))).status)
            if statuses[-1] == 503:
                break
    assert statuses[-1] == 503, statuses
    failures = [r for r in caplog.records if "sqlite write failed" in r.getMessage()]
    assert failures and failures[0].levelno == logging.ERROR
    assert "database or disk is full" in failures[0].getMessage()
    clock.advance(MAX_AGE_S)
    ready = await client.get("/health/ready")
    assert ready.status == 200  # reads still serve: degraded, not unavailable
    answer = await ready.json()
    assert answer["status"] == "degraded"
    assert answer["checks"]["storage_writes"]["state"] == "down"
    assert answer["checks"]["storage_writes"]["detail"] == "WritesFailing"
    assert answer["checks"]["storage"]["state"] == "ok"

    await _free_disk(repository)
    with caplog.at_level(logging.WARNING):
        assert (await client.post("/api/v1/customers", json=body(999))).status == 201
    assert any("writes succeed again" in r.getMessage() for r in caplog.records)
    clock.advance(MAX_AGE_S)
    answer = await (await client.get("/health/ready")).json()
    assert answer["checks"]["storage_writes"]["state"] == "ok"


async def test_a_run_of_failures_logs_a_bounded_number_of_lines(
    full: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, repository, clock = full
    repository.health._clock = clock  # the log interval on the test's clock
    with caplog.at_level(logging.WARNING):
        for i in range(40):
            await client.post("/api/v1/customers", json=body(i))
        clock.advance(repository.health.LOG_EVERY_S)
        await client.post("/api/v1/customers", json=body(41))
    lines = [r for r in caplog.records if "sqlite write failed" in r.getMessage()]
    assert 1 <= len(lines) <= 2
    assert lines[-1].levelno == logging.WARNING or len(lines) == 1
