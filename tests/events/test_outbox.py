"""The outbox holds: kill -9 during bursts of writes from several processes on one SQLite
file, and the feed and the stored changes agree one to one; a MongoDB write whose drain
failed still gets its event, once."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from pymongo.errors import PyMongoError

from service.storage import open_repository
from service.storage.pii import Keyring, PiiCodec
from service.storage.sqlite_schema import sqlite_path
from tests.factories import change
from tests.storage.conftest import customer

BURST = Path(__file__).with_name("burst.py")
ROOT = Path(__file__).resolve().parents[2]
CODEC = PiiCodec(Keyring.generate())
TYPES = {"create": "customer.created", "update": "customer.updated", "close": "customer.closed"}


async def _burst(url: str, offset: int) -> Any:
    return await asyncio.create_subprocess_exec(
        *(sys.executable, str(BURST), url, CODEC.keyring.to_json(), str(offset), "100000"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )


async def test_kill_9_during_bursts_of_two_processes_leaves_feed_and_changes_one_to_one(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'customers.db'}"
    repository = open_repository(url, "customers", CODEC)
    await repository.ensure_schema()
    await repository.close()
    processes = [await _burst(url, 0), await _burst(url, 1_000_000)]
    acknowledged: list[tuple[str, str]] = []

    def acknowledgement(line: bytes) -> tuple[str, str]:
        parts = line.decode().split()
        assert len(parts) == 2, line  # `ACTION ID`; else say what came instead
        return parts[0], parts[1]

    for process in processes:  # let both write a while, then kill both mid-burst
        for _ in range(150):
            acknowledged.append(acknowledgement(await process.stdout.readline()))
    for process in processes:
        process.send_signal(signal.SIGKILL)
    for process in processes:
        async for line in process.stdout:
            assert line.endswith(b"\n"), line  # burst.py writes each line in one write(2)
            acknowledged.append(acknowledgement(line))
        assert await process.wait() == -signal.SIGKILL

    with sqlite3.connect(sqlite_path(url)) as connection:
        events = connection.execute(
            "SELECT position, id, customer_id, type, fields FROM events ORDER BY position"
        ).fetchall()
        audit = connection.execute("SELECT customer_id, action FROM audit ORDER BY seq").fetchall()
        customers = {row[0] for row in connection.execute("SELECT id FROM customers")}
    # one event per recorded change, in the same commit order, across both processes
    assert [(e[2], e[3]) for e in events] == [(cid, TYPES[action]) for cid, action in audit]
    assert len({e[1] for e in events}) == len(events)  # unique ids
    positions = [e[0] for e in events]
    assert positions == sorted(set(positions))
    # every acknowledged change has its event; every event's change is stored
    announced = {(e[2], e[3]) for e in events}
    assert {(cid, TYPES[action]) for action, cid in acknowledged} <= announced
    created = {e[2] for e in events if e[3] == "customer.created"}
    closed = {e[2] for e in events if e[3] == "customer.closed"}
    assert created - closed == customers and closed <= created
    assert all(e[4] == '["name"]' for e in events if e[3] == "customer.updated")


async def test_a_mongodb_write_whose_drain_failed_gets_its_event_at_the_next_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.storage.mongo_events import MongoEventStore

    repository: Any = open_repository("mongomock://", "customers", CODEC)
    await repository.ensure_schema()
    real_append = MongoEventStore.append_event

    async def down(self: Any, doc: Any) -> None:
        raise PyMongoError("the server went away after the write")

    monkeypatch.setattr(MongoEventStore, "append_event", down)
    stored = await repository.insert(customer(), change("create", fields=("name",)))
    monkeypatch.setattr(MongoEventStore, "append_event", real_append)
    assert await repository.events._events.count_documents({}) == 0  # still in the outbox
    page = await repository.events.page(after=None, limit=10)
    ((position, event),) = page.events
    assert (event.customer_id, event.type, position) == (stored["id"], "customer.created", 1)
    assert await repository.drain() == 0
    assert len((await repository.events.page(after=None, limit=10)).events) == 1
    await repository.close()
