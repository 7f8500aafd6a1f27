"""No personal value ever reaches the audit trail: random customers are created, changed,
read and exported, then every byte of the audit store (the SQLite table's rows as the file
holds them, or the BSON of the MongoDB collection) is searched for each of their values."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import service.audit.reads as reads_module
from service.audit.reads import ReadRecorder
from service.customers.errors import DuplicateCustomer
from service.storage.base import CustomerRepository, DatabaseUnavailable
from service.storage.journal import journal_rows
from service.storage.mongo import MongoRepository
from service.storage.sqlite import SqliteRepository
from tests.factories import change, make_cpf

# Values carry a character no entry member can hold by chance (hex hashes and ids, field
# names, ISO times), so finding one in the store can only mean it leaked.
_text = st.text(
    alphabet=st.characters(categories=("L", "N", "Zs"), exclude_characters="\x00"),
    min_size=3,
    max_size=30,
)
marked = st.builds(lambda body: f"§{body}", _text)
people = st.fixed_dictionaries(
    {
        "name": marked,
        "email": st.builds(
            lambda local, host: f"{local}@{host}.com",
            st.from_regex(r"[a-z0-9._]{1,20}", fullmatch=True),
            st.from_regex(r"[a-z]{2,12}", fullmatch=True),
        ),
        "phone": st.builds(lambda n: f"+55{n}", st.integers(10**10, 10**11 - 1)),
        "cpf": st.builds(make_cpf, st.integers(100_000_000, 999_999_999)),
        "address": st.fixed_dictionaries(
            {
                "cep": st.builds(lambda n: f"{n:08d}", st.integers(10_000_000, 99_999_999)),
                "street": marked,
                "neighborhood": marked,
                "city": st.just("São Paulo"),
                "state": st.just("SP"),
                "number": marked,
                "complement": st.one_of(st.none(), marked),
                "source": st.just("viacep"),
            }
        ),
    }
)


def personal_values(person: dict[str, Any]) -> list[str]:
    address = person["address"]
    values = [person[name] for name in ("name", "email", "phone", "cpf")]
    values += [address[n] for n in ("cep", "street", "neighborhood", "number", "complement")]
    return [value for value in values if value]


async def store_bytes(repository: CustomerRepository) -> bytes:
    """Everything the audit store holds, as stored."""
    if isinstance(repository, SqliteRepository):
        import sqlite3

        with sqlite3.connect(repository.path) as connection:
            rows = connection.execute("SELECT * FROM audit").fetchall()
        return "\n".join(repr(row) for row in rows).encode()
    import bson

    assert isinstance(repository, MongoRepository)
    await repository.drain()
    dump = b""
    async for doc in repository._client[repository._collection.database.name]["audit"].find():
        dump += bson.encode(doc)
    return dump


def recorder(repository: CustomerRepository) -> ReadRecorder:
    registry = CollectorRegistry()
    return ReadRecorder(
        repository.audit,
        "all",
        written=Counter("w", "w", ["action"], registry=registry),
        depth=Gauge("d", "d", registry=registry),
        flush_latency=Histogram("f", "f", registry=registry),
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=people, second=people)
async def test_no_personal_value_is_ever_in_the_trail(
    repository: CustomerRepository, first: dict[str, Any], second: dict[str, Any]
) -> None:
    try:
        stored = await repository.insert(first, change("create", fields=("name", "cpf")))
    except DuplicateCustomer:  # an earlier example drew the same email or CPF
        return
    changes = {k: second[k] for k in ("name", "phone")} | {"address": second["address"]}
    await repository.update(stored["id"], changes, change("update", fields=tuple(changes)))
    reads = recorder(repository)
    reads.record("reader", "req-1", [stored["id"]], frozenset())
    reads.record("masked-reader", None, [stored["id"]], frozenset({"cpf", "phone"}))
    await reads.flush()
    export = journal_rows(change("export", "dpo", ("name", "cpf")), stored["id"]).audit
    await repository.audit.append([export])
    dump = await store_bytes(repository)
    assert stored["id"].encode() in dump  # the store holds this customer's entries
    for value in personal_values(first) + personal_values(second):
        for form in (value.encode(), json.dumps(value).encode(), repr(value).encode()):
            assert form not in dump, value


async def auditor_reads_stored(repository: CustomerRepository) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = await repository.audit.page(limit=500, actor="auditor", cursor=cursor)
        seen += [entry["customer_id"] for entry in page.items]
        if (cursor := page.next_cursor) is None:
            return seen


PENDING = [f"{n + 1:024x}" for n in range(250)]  # mongomock pages through them slowly


async def test_a_large_flush_writes_in_parts_and_lets_other_requests_run_between_them(
    repository: CustomerRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pending reads go to the store `_WRITE` at a time (one transaction each, so a write
    queued behind them waits for one part only), built in chunks: a coroutine scheduled
    when the flush starts runs before the second part reaches the store. Each read once."""
    monkeypatch.setattr(reads_module, "_WRITE", 100)
    monkeypatch.setattr(reads_module, "_CHUNK", 40)
    reads = recorder(repository)
    for customer_id in PENDING:
        reads.record("auditor", None, [customer_id], frozenset())
    parts: list[tuple[int, bool]] = []
    ran = asyncio.Event()
    append = repository.audit.append

    async def watched(entries: Any) -> None:
        parts.append((len(entries), ran.is_set()))
        await append(entries)

    repository.audit.append = watched  # type: ignore[method-assign]

    async def other_request() -> None:
        ran.set()

    flushing = asyncio.create_task(reads.flush())
    asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(other_request()))
    assert await flushing == 250
    assert [size for size, _ in parts] == [100, 100, 50]
    assert [ran_before for _, ran_before in parts[1:]] == [True, True]
    assert sorted(await auditor_reads_stored(repository)) == PENDING


async def test_a_flush_that_fails_midway_keeps_only_the_reads_it_did_not_write(
    repository: CustomerRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads_module, "_WRITE", 100)
    reads = recorder(repository)
    for customer_id in PENDING:
        reads.record("auditor", None, [customer_id], frozenset())
    append = repository.audit.append
    calls = 0

    async def failing_second(entries: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise DatabaseUnavailable()
        await append(entries)

    repository.audit.append = failing_second  # type: ignore[method-assign]
    with pytest.raises(DatabaseUnavailable):
        await reads.flush()
    assert await auditor_reads_stored(repository) != []
    assert await reads.flush() == 150  # the first part is not written again
    stored = await auditor_reads_stored(repository)
    assert sorted(stored) == PENDING  # every read once, none twice
