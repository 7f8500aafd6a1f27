"""Group commit: one transaction per batch of waiting writes, one savepoint per write."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from service.customers.errors import DuplicateCustomer
from service.storage.group_commit import BatchAborted, GroupCommitWriter, WriterTurns
from service.storage.sqlite import SqliteRepository
from tests.factories import change, make_cpf
from tests.storage.conftest import customer


class TracedFile:
    """Connections to one file that record every statement they run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.statements: list[str] = []
        with sqlite3.connect(path, isolation_level=None) as setup:
            setup.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            setup.execute(
                "CREATE TABLE item (name TEXT UNIQUE, parent INTEGER REFERENCES parent (id)"
                " DEFERRABLE INITIALLY DEFERRED)"
            )

    def connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA foreign_keys = ON")
        connection.set_trace_callback(self.statements.append)
        return connection

    def names(self) -> list[str]:
        with sqlite3.connect(self.path) as reader:
            return sorted(name for (name,) in reader.execute("SELECT name FROM item"))

    def commits(self) -> int:
        return self.statements.count("COMMIT")


def insert(name: str, parent: int | None = None) -> Any:
    def work(connection: sqlite3.Connection) -> str:
        connection.execute("INSERT INTO item VALUES (?, ?)", (name, parent))
        return name

    return work


async def held_back(writer: GroupCommitWriter) -> tuple[threading.Event, asyncio.Task[Any]]:
    """A first write that blocks the writer thread until the event is set, so the writes
    submitted meanwhile wait together for the next batch."""
    gate, started = threading.Event(), threading.Event()

    def blocking(connection: sqlite3.Connection) -> str:
        started.set()
        gate.wait(5)
        return "first"

    task = asyncio.ensure_future(writer.submit(blocking))
    await asyncio.to_thread(started.wait, 5)
    return gate, task


async def test_waiting_writes_share_one_commit_and_a_failure_fails_only_its_write(tmp_path):
    file = TracedFile(tmp_path / "db.sqlite")
    writer = GroupCommitWriter(file.connect)
    gate, first = await held_back(writer)

    def half_done(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO item VALUES ('half', NULL)")
        raise ValueError("the work gives up after writing")

    names = [f"w{i}" for i in range(20)]
    pending = [asyncio.ensure_future(writer.submit(insert(name))) for name in names]
    pending.append(asyncio.ensure_future(writer.submit(insert("w3"))))  # unique clash
    pending.append(asyncio.ensure_future(writer.submit(half_done)))
    await asyncio.sleep(0.05)  # let the submissions reach the queue
    gate.set()
    results = await asyncio.gather(first, *pending, return_exceptions=True)
    await writer.close()

    assert results[1:21] == names
    assert isinstance(results[21], sqlite3.IntegrityError)
    assert isinstance(results[22], ValueError)
    assert file.names() == sorted(names)  # nothing of the failed writes
    assert file.commits() == 2  # the held-back write, then everything that waited


async def test_a_failed_commit_fails_every_write_of_its_batch(tmp_path):
    file = TracedFile(tmp_path / "db.sqlite")
    writer = GroupCommitWriter(file.connect)
    gate, first = await held_back(writer)
    good = asyncio.ensure_future(writer.submit(insert("good")))
    # A deferred foreign key is checked at COMMIT: the whole batch cannot commit.
    orphan = asyncio.ensure_future(writer.submit(insert("orphan", parent=42)))
    await asyncio.sleep(0.05)
    gate.set()
    assert await first == "first"
    for task in (good, orphan):
        with pytest.raises(sqlite3.IntegrityError):
            await task
    assert await writer.submit(insert("after")) == "after"  # the writer goes on
    await writer.close()
    assert file.names() == ["after"]


async def test_a_transaction_sqlite_aborts_fails_the_writes_before_it(tmp_path):
    file = TracedFile(tmp_path / "db.sqlite")
    writer = GroupCommitWriter(file.connect)
    gate, first = await held_back(writer)

    def abort(connection: sqlite3.Connection) -> None:
        connection.execute("ROLLBACK")  # what SQLite does itself on SQLITE_FULL or IOERR
        raise sqlite3.OperationalError("disk I/O error")

    before = asyncio.ensure_future(writer.submit(insert("before")))
    aborted = asyncio.ensure_future(writer.submit(abort))
    await asyncio.sleep(0.05)
    gate.set()
    await first
    for task in (before, aborted):
        with pytest.raises(BatchAborted):
            await task
    await writer.close()
    assert file.names() == []


async def test_many_concurrent_inserts_with_clashes_fail_only_the_clashing_ones(tmp_path, codec):
    repository = SqliteRepository(tmp_path / "customers.db", codec)
    await repository.ensure_schema()
    originals = [customer(f"c{i}@example.com", f"{i:011d}") for i in range(60)]
    clashes = [customer(f"C{i}@Example.com", f"{900 + i:011d}") for i in range(20)]
    results = await asyncio.gather(
        *(repository.insert(c, change("create")) for c in originals + clashes),
        return_exceptions=True,
    )
    assert all(isinstance(r, dict) for r in results[:60])
    assert all(isinstance(r, DuplicateCustomer) and r.fields == ("email",) for r in results[60:])
    stored = (await repository.page(limit=100)).items
    assert sorted(c["email"] for c in stored) == sorted(c["email"] for c in originals)
    await repository.close()


async def test_idle_hook_runs_once_after_writes_stop(tmp_path):
    file = TracedFile(tmp_path / "db.sqlite")
    idle: list[int] = []
    writer = GroupCommitWriter(
        file.connect, on_idle=lambda connection: idle.append(file.commits()), idle_s=0.05
    )
    await asyncio.sleep(0.2)
    assert idle == []  # no write yet: nothing to do when idle
    await asyncio.gather(*(writer.submit(insert(f"a{i}")) for i in range(5)))
    await asyncio.sleep(0.3)
    assert len(idle) == 1 and idle[0] >= 1  # once, after the commits, not on every timeout
    await writer.submit(insert("b"))
    await asyncio.sleep(0.3)
    assert len(idle) == 2
    await writer.close()
    assert file.names() == ["a0", "a1", "a2", "a3", "a4", "b"]


async def test_a_failing_idle_hook_does_not_stop_the_writer(tmp_path):
    file = TracedFile(tmp_path / "db.sqlite")

    def broken(connection: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("database is locked")

    writer = GroupCommitWriter(file.connect, on_idle=broken, idle_s=0.01)
    await writer.submit(insert("a"))
    await asyncio.sleep(0.1)
    assert await writer.submit(insert("b")) == "b"
    await writer.close()


async def test_sqlite_writes_reach_the_database_file_once_idle(tmp_path, monkeypatch):
    """After a burst, the pages the automatic checkpoint left in the WAL are copied into
    the database file (so reads stop looking them up in the WAL)."""
    from service.storage.pii import Keyring, PiiCodec

    monkeypatch.setattr(
        GroupCommitWriter, "__init__", _with_idle_s(GroupCommitWriter.__init__, 0.05)
    )
    path = tmp_path / "customers.db"
    repository = SqliteRepository(path, PiiCodec(Keyring.generate()))
    await repository.ensure_schema()
    size = path.stat().st_size
    stored = [
        await repository.insert(customer(f"m{n}@example.com", f"{n:011d}"), change())
        for n in range(30)
    ]
    assert path.stat().st_size == size  # still in the WAL
    await asyncio.sleep(0.5)
    assert path.stat().st_size > size
    assert await repository.get(stored[-1]["id"]) == stored[-1]
    await repository.close()


def _with_idle_s(init: Any, idle_s: float) -> Any:
    def patched(self: GroupCommitWriter, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **{**kwargs, "idle_s": idle_s})

    return patched


async def test_a_batch_waits_for_the_turn_another_process_holds(tmp_path):
    """`flock` locks belong to an open file: a second open of the lock file stands for the
    writer of another worker process, holding its turn."""
    file = TracedFile(tmp_path / "t.db")
    lock = tmp_path / "t.db-writer.lock"
    writer = GroupCommitWriter(file.connect, turns=WriterTurns(lock))
    other = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        waiting = asyncio.ensure_future(writer.submit(insert("a")))
        await asyncio.sleep(0.3)
        assert not waiting.done() and "BEGIN IMMEDIATE" not in file.statements
        fcntl.flock(other, fcntl.LOCK_UN)
        assert await asyncio.wait_for(waiting, 5) == "a"
        # the batch gave its turn back: the other writer takes it at once (else this raises)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)
        await writer.close()
    assert file.names() == ["a"] and lock.stat().st_size == 0
    assert lock.stat().st_mode & 0o777 == 0o600


async def test_writers_of_two_repositories_on_one_file_take_turns_without_busy_errors(
    tmp_path, codec
):
    """Two repositories on one file (as two worker processes have), each with its own
    writer thread: every insert of both is stored, none fails on a locked database."""
    path = tmp_path / "c.db"
    first, second = SqliteRepository(path, codec), SqliteRepository(path, codec)
    await first.ensure_schema()
    await second.ensure_schema()
    try:
        inserts = [
            (first, second)[n % 2].insert(
                customer(f"c{n}@example.com", make_cpf(100_000 + n)), change("create")
            )
            for n in range(200)
        ]
        stored = await asyncio.gather(*inserts)
        assert len({c["id"] for c in stored}) == 200
        assert len((await first.page(limit=500)).items) == 200
    finally:
        await first.close()
        await second.close()
