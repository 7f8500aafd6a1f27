"""The journal: every write records its audit entry atomically with it, on every adapter;
the entries form one hash chain, newest first by customer and by actor."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from service.audit.chain import GENESIS, broken_link
from service.customers.errors import DuplicateCustomer, InvalidCursor
from service.storage.base import Change, CustomerRepository
from service.storage.journal import journal_rows
from service.storage.mongo import MongoRepository
from service.storage.sqlite import SqliteRepository
from tests.factories import change
from tests.storage.conftest import customer


async def entries(repository: CustomerRepository) -> list[dict[str, Any]]:
    return [entry async for entry in repository.audit.chain()]


def assert_one_chain(chain: list[dict[str, Any]]) -> None:
    previous = GENESIS
    for entry in chain:
        assert broken_link(entry, previous) is None, entry
        previous = entry["hash"]


async def test_each_write_records_one_entry_with_who_what_and_which_fields(
    repository: CustomerRepository,
) -> None:
    created = await repository.insert(
        customer(), change("create", "alice", ("name", "email", "phone", "cpf", "address"))
    )
    await repository.update(created["id"], {"name": "Maria S."}, change("update", "bob", ("name",)))
    assert await repository.delete(created["id"], change("close", "carol"))
    chain = await entries(repository)
    assert [(e["action"], e["actor"], e["fields"]) for e in chain] == [
        ("create", "alice", ["address", "cpf", "email", "name", "phone"]),
        ("update", "bob", ["name"]),
        ("close", "carol", []),
    ]
    assert {e["customer_id"] for e in chain} == {created["id"]}
    assert {e["request_id"] for e in chain} == {"test-request"}
    assert_one_chain(chain)
    page = await repository.audit.page(limit=10, customer_id=created["id"])
    assert [e["action"] for e in page.items] == ["close", "update", "create"]  # newest first
    assert page.next_cursor is None
    by_bob = await repository.audit.page(limit=10, actor="bob")
    assert [e["action"] for e in by_bob.items] == ["update"]


async def test_a_write_that_fails_records_nothing(repository: CustomerRepository) -> None:
    first = await repository.insert(customer(), change("create"))
    other = await repository.insert(customer("joao@example.com", "11144477735"), change("create"))
    with pytest.raises(DuplicateCustomer):
        await repository.insert(customer(), change("create", "mallory"))
    with pytest.raises(DuplicateCustomer):
        await repository.update(other["id"], {"email": "maria@example.com"}, change("update"))
    unknown = "0" * 24
    assert await repository.update(unknown, {"name": "X"}, change("update")) is None
    assert await repository.delete(unknown, change("close")) is False
    assert await repository.delete(first["id"], change("close"))
    assert await repository.delete(first["id"], change("close")) is False  # already gone
    chain = await entries(repository)
    assert [e["action"] for e in chain] == ["create", "create", "close"]
    assert "mallory" not in {e["actor"] for e in chain}


async def test_concurrent_writes_form_one_chain(repository: CustomerRepository) -> None:
    stored = await asyncio.gather(
        *(
            repository.insert(customer(f"c{i}@example.com", f"{i:011d}"), change("create"))
            for i in range(30)
        )
    )
    await asyncio.gather(
        *(repository.update(c["id"], {"name": "N"}, change("update")) for c in stored)
    )
    chain = await entries(repository)
    assert len(chain) == 60 and len({e["id"] for e in chain}) == 60
    assert_one_chain(chain)


async def test_restore_records_each_customer_it_stores_once(repository: CustomerRepository) -> None:
    original = await repository.insert(customer(), change("create"))
    copy: Any = {**customer("joao@example.com", "11144477735"), "id": "0" * 23 + "1"}
    copy |= {"created_at": original["created_at"], "updated_at": original["updated_at"]}
    assert await repository.restore([original, copy], change("create", "operator")) == 1
    assert await repository.restore([original, copy], change("create", "operator")) == 0
    by_operator = await repository.audit.page(limit=10, actor="operator")
    assert [e["customer_id"] for e in by_operator.items] == [copy["id"]]


async def test_pages_walk_newest_first_without_gap(repository: CustomerRepository) -> None:
    stored = await repository.insert(customer(), change("create"))
    for n in range(11):
        await repository.update(stored["id"], {"name": f"N{n}"}, change("update"))
    seen, cursor = [], None
    while True:
        page = await repository.audit.page(limit=4, cursor=cursor, customer_id=stored["id"])
        seen += page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [e["id"] for e in seen] == [e["id"] for e in reversed(await entries(repository))]
    for bad in ("nope", "AAAA", stored["id"]):
        with pytest.raises(InvalidCursor):
            await repository.audit.page(limit=4, cursor=bad, customer_id=stored["id"])


async def test_append_links_entries_without_a_write(repository: CustomerRepository) -> None:
    stored = await repository.insert(customer(), change("create"))
    reads = [journal_rows(change("read", "eve"), stored["id"]).audit for _ in range(3)]
    await repository.audit.append(reads)
    chain = await entries(repository)
    assert [e["id"] for e in chain[1:]] == [r["id"] for r in reads]
    assert_one_chain(chain)


@pytest.mark.parametrize("sizes", [(1, 2, 3), (255, 1), (256,), (257, 511), (513, 1000)])
async def test_batches_of_any_size_land_whole_and_in_order(
    repository: CustomerRepository, sizes: tuple[int, ...]
) -> None:
    """SQLite splits a batch into INSERTs of 256, 128, ... rows: every size lands whole."""
    stored = await repository.insert(customer(), change("create"))
    appended = []
    for size in sizes:
        batch = [
            journal_rows(change("read", f"reader-{n % 7}"), stored["id"]).audit for n in range(size)
        ]
        await repository.audit.append(batch)
        appended += batch
    chain = await entries(repository)
    assert [e["id"] for e in chain[1:]] == [e["id"] for e in appended]
    assert [e["actor"] for e in chain[1:]] == [e["actor"] for e in appended]
    assert_one_chain(chain)


async def test_sqlite_writers_of_two_processes_extend_one_chain(tmp_path: Path, codec: Any) -> None:
    """Two repositories on one file (what two worker processes are): the head is read
    inside each write transaction, so the chain never forks."""
    path = tmp_path / "shared.db"
    first, second = SqliteRepository(path, codec), SqliteRepository(path, codec)
    await first.ensure_schema()
    await second.ensure_schema()
    try:
        await asyncio.gather(
            *(
                (first if i % 2 else second).insert(
                    customer(f"c{i}@example.com", f"{i:011d}"), change("create", f"w{i % 2}")
                )
                for i in range(40)
            )
        )
        chain = await entries(first)
        assert len(chain) == 40
        assert {e["actor"] for e in chain} == {"w0", "w1"}
        assert_one_chain(chain)
    finally:
        await first.close()
        await second.close()


async def test_mongo_journal_left_in_the_outbox_is_drained_once(codec: Any) -> None:
    """A process killed after the customer's write and before (or during) its drain leaves
    the entry in the document's `_outbox`: the next drain moves it, exactly once."""
    repository = MongoRepository.from_url("mongomock://", "journal", codec)
    await repository.ensure_schema()
    stored = await repository.insert(customer(), change("create"))
    pending = journal_rows(change("update", "bob"), stored["id"]).audit
    collection = repository._collection
    await collection.update_one(
        {"_id": ObjectId(stored["id"])},
        {"$push": {"_outbox": {"id": pending["id"], "audit": pending}}},
    )
    await repository.audit.append_one(pending)  # the crash came after the append, before $pull
    assert await repository.drain() == 1
    assert await repository.drain() == 0
    chain = await entries(repository)
    assert [e["id"] for e in chain].count(pending["id"]) == 1
    assert_one_chain(chain)
    assert "_outbox" not in str(await repository.get(stored["id"]))


def test_a_change_names_fields_never_values() -> None:
    made = Change.of("update", "alice", fields=("name", "email", "name"))
    assert made.fields == ("email", "name")
    assert made.event_type == "customer.updated"
    assert Change.of("export", "dpo").event_type is None
    with pytest.raises(ValueError):
        journal_rows(Change.of("drop", "alice"), "0" * 24)
