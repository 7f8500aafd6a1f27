"""Read entries: which customers a caller was shown, and which personal fields in clear.

Reads are many and a response must not wait for a disk, so they are buffered and appended
in one write at least every `interval_s` (a kill -9 loses at most that much), and on close
(the server's clean shutdown, after the requests in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence

from prometheus_client import Counter, Gauge, Histogram

from service.audit.chain import PERSONAL_FIELDS, Entry, new_entry_at
from service.authz.masking import WHOLE_RECORD
from service.storage.base import AuditStore
from service.timetext import millisecond_texts

log = logging.getLogger(__name__)
READ_MODES = ("pii", "all", "none")
# the fields whose clear display makes a read worth recording under `pii`
_SENSITIVE = frozenset({"cpf", "phone"})
# actor, request id, customer id, fields shown, when (time.time(): a datetime per read cost
# more than the rest of `record`)
_Pending = tuple[str, str | None, str, tuple[str, ...], float]


def shown_in_clear(mode: str, masked_fields: frozenset[str]) -> tuple[str, ...]:
    """The personal fields a response showed in clear, when `mode` records it; else ()."""
    if mode == "none" or WHOLE_RECORD in masked_fields:
        return ()
    shown = tuple(name for name in PERSONAL_FIELDS if name not in masked_fields)
    if mode == "pii" and _SENSITIVE.isdisjoint(shown):
        return ()
    return tuple(sorted(shown))


class ReadRecorder:
    def __init__(
        self,
        store: AuditStore,
        mode: str,
        *,
        written: Counter,
        depth: Gauge,
        flush_latency: Histogram,
        interval_s: float = 1.0,
    ) -> None:
        if mode not in READ_MODES:
            raise ValueError(f"audit.reads: {mode!r} is not one of {', '.join(READ_MODES)}")
        self.mode = mode
        self._store = store
        self._written = written
        self._flush_latency = flush_latency
        self._interval_s = interval_s
        self._pending: list[_Pending] = []
        depth.set_function(lambda: len(self._pending))  # read when scraped, not per request
        self._fields: dict[frozenset[str], tuple[str, ...]] = {}
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()

    def record(
        self,
        actor: str,
        request_id: str | None,
        customer_ids: Iterable[str],
        masked_fields: frozenset[str],
    ) -> None:
        """Note that `actor` was shown these customers with `masked_fields` masked (no I/O)."""
        fields = self._fields.get(masked_fields)
        if fields is None:
            fields = self._fields[masked_fields] = shown_in_clear(self.mode, masked_fields)
        if not fields:
            return
        at = time.time()
        self._pending += [(actor, request_id, id_, fields, at) for id_ in customer_ids]

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever())

    async def close(self) -> None:
        """Stop the timer, then write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.flush()
            await self._store.drain()
        except Exception as exc:
            log.error(
                "%d audit reads could not be written at shutdown (%s)",
                len(self._pending),
                type(exc).__name__,
            )

    async def flush(self) -> int:
        """Append every pending read, `_WRITE` at a time; what is not written stays for the
        next flush (in order, and never twice). One transaction per `_WRITE`, not per
        flush: a write queued behind a second of page reads (~20,000 entries) then waits
        for one of them, not for all (p99 of POST beside them: docs/performance.md)."""
        async with self._flushing:
            batch, self._pending = self._pending, []
            written = 0
            started = time.perf_counter()
            try:
                while written < len(batch):
                    part = batch[written : written + _WRITE]
                    await self._store.append(await _entries(part))
                    written += len(part)
            finally:
                self._pending[:0] = batch[written:]
                if written:
                    self._written.labels("read").inc(written)
            if batch:
                self._flush_latency.observe(time.perf_counter() - started)
            return written

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.flush()
                await self._store.drain()  # MongoDB: journals a crashed drain left behind
            except Exception as exc:  # the database is down: these reads wait for the next round
                log.warning("audit reads not written yet (%s); retrying", type(exc).__name__)


# A second of pages of 20 is some 20,000 reads: built in one go, their entries held the
# event loop for tens of milliseconds (p99 of a page of 20: 88 -> 68 ms in chunks).
_CHUNK = 500
# Entries per append (one transaction, with its fsync): a few a second under load.
_WRITE = 2000


async def _entries(batch: Sequence[_Pending]) -> list[Entry]:
    stamp = millisecond_texts("Z")  # the entry's `at` (service/audit/chain.py, `timestamp`)
    entries: list[Entry] = []
    for start in range(0, len(batch), _CHUNK):
        if start:
            await asyncio.sleep(0)  # let the requests waiting meanwhile run
        entries += [
            new_entry_at(
                action="read",
                actor=actor,
                customer_id=id_,
                fields=fields,
                request_id=rid,
                at=stamp(at),
            )
            for actor, rid, id_, fields, at in batch[start : start + _CHUNK]
        ]
    return entries
