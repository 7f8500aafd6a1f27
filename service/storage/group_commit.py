"""Group commit: the SQLite writer thread commits every pending write in one transaction.

With `synchronous=FULL` each commit costs an fsync (~4 ms on this project's machines), and
one writer thread commits one write at a time: alone, that caps writes at a few hundred per
second. Here the thread takes every write waiting in its queue (up to `max_batch`), runs
each in its own SAVEPOINT inside one `BEGIN IMMEDIATE` transaction, and commits once: one
fsync for the whole batch.

- A write that fails (a unique index clash, a validation raised by the work itself) rolls
  back to its savepoint: only that write fails, the others of the batch go on.
- Every write is acknowledged (its future resolved) only after its batch has committed;
  if the commit fails, or SQLite aborted the transaction, every write of the batch fails.
- A write arriving while a batch commits waits for the next batch, so batches grow with the
  load and a lone write waits for nothing.
- Several processes (`serve --workers N`) each have a writer thread; they take turns
  through `WriterTurns`, an exclusive `flock` held for each batch's transaction. Without
  it, a writer that finds the file locked waits in SQLite's busy handler, which sleeps and
  retries (1, 2, 5, 10 ... 100 ms): two group-committing writers then spent their time
  asleep (docs/performance.md, "Several workers").
- `on_idle` runs on the writer connection once the writer has had nothing to do for
  `idle_s` after a write (SQLite: a WAL checkpoint, so reads after a burst of writes do not
  keep paying for the frames the automatic checkpoint left behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]
_Item = tuple[Work, asyncio.AbstractEventLoop, "asyncio.Future[Any]"]
_STOP = None


class BatchAborted(Exception):
    """The batch this write belonged to was not committed (so neither was the write)."""


class WriterTurns:
    """An exclusive `flock` on `path` (created 0600, empty), held while one batch commits:
    the kernel wakes the next waiting writer as soon as it is released."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def __enter__(self) -> None:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # releases the GIL while it waits

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class GroupCommitWriter:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        guard: Callable[[Exception], Exception] = lambda exc: exc,
        max_batch: int = 256,
        name: str = "sqlite-writer",
        on_idle: Callable[[sqlite3.Connection], object] | None = None,
        idle_s: float = 1.0,
        turns: WriterTurns | None = None,
    ) -> None:
        """`connect` opens the writer connection (on the thread, at the first write);
        `guard` maps a driver error raised by BEGIN/COMMIT to what the callers get."""
        self._connect = connect
        self._guard = guard
        self._max_batch = max_batch
        self._on_idle = on_idle
        self._idle_s = idle_s
        self._turns = turns
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def submit(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` in the next batch; its result once the batch is durable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((work, loop, future))
        return await future

    async def close(self) -> None:
        """Finish the writes already queued, then stop the thread and close the connection."""
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            wrote = False  # since the last idle run
            while True:
                batch, stop = self._next_batch(idle_s=self._idle_s if wrote else None)
                if not batch and not stop:  # idle after writes
                    wrote = False
                    if connection is not None and self._on_idle is not None:
                        with contextlib.suppress(sqlite3.Error):
                            self._on_idle(connection)
                    continue
                wrote = True
                if batch:
                    if connection is None:
                        try:
                            connection = self._connect()
                        except Exception as exc:
                            _settle(batch, [self._guard(exc)] * len(batch))
                            continue
                    _settle(batch, self._commit(connection, batch))
                if stop:
                    return
        finally:
            if connection is not None:
                connection.close()
            if self._turns is not None:
                self._turns.close()

    def _next_batch(self, idle_s: float | None) -> tuple[list[_Item], bool]:
        """Block for one write (an empty batch after `idle_s`, if given), then take
        whatever else is waiting."""
        try:
            first = self._queue.get(timeout=idle_s)
        except queue.Empty:
            return [], False
        if first is _STOP:
            return [], True
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _commit(self, connection: sqlite3.Connection, batch: list[_Item]) -> list[Any]:
        """Each write's result (`_Done`) or the exception to raise for it."""
        outcomes: list[Any] = []
        with self._turns or contextlib.nullcontext():
            try:
                connection.execute("BEGIN IMMEDIATE")
                for number, (work, _, _) in enumerate(batch):
                    outcomes.append(_run_in_savepoint(connection, work, f"write_{number}"))
                connection.execute("COMMIT")
            except Exception as exc:  # the batch is lost: none of its writes is durable
                with contextlib.suppress(sqlite3.Error):
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                lost = self._guard(exc)
                kept = [o if isinstance(o, Exception) else lost for o in outcomes]
                return kept + [lost] * (len(batch) - len(outcomes))
        return outcomes


def _run_in_savepoint(connection: sqlite3.Connection, work: Work, savepoint: str) -> Any:
    """`_Done(result)`, or the exception the work raised once its changes are undone."""
    connection.execute(f"SAVEPOINT {savepoint}")
    try:
        outcome: Any = _Done(work(connection))
    except Exception as exc:
        if not connection.in_transaction:  # SQLite rolled back the whole transaction
            raise BatchAborted("SQLite rolled the batch back") from exc
        connection.execute(f"ROLLBACK TO {savepoint}")
        outcome = exc
    connection.execute(f"RELEASE {savepoint}")
    return outcome


class _Done:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _settle(batch: list[_Item], outcomes: list[Any]) -> None:
    for (_, loop, future), outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, _Done):
            loop.call_soon_threadsafe(_resolve, future, outcome.value, None)
        else:
            loop.call_soon_threadsafe(_resolve, future, None, outcome)


def _resolve(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
