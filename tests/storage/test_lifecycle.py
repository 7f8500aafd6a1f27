"""The lifecycle through the repository contract, on every adapter (see conftest.py)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from service.customers import lifecycle
from service.customers.errors import DuplicateCustomer
from service.customers.lifecycle import (
    ACTIVE,
    ANONYMIZED,
    BLOCKED,
    CLOSED,
    STATUSES,
    LifecycleError,
    Transition,
)
from service.customers.model import Customer, now
from service.storage.base import CustomerRepository
from service.storage.idempotency import ClaimState
from tests.factories import change
from tests.storage.conftest import customer

DAYS = 3653
# How to bring a fresh (active) customer to each status.
PATH_TO = {
    ACTIVE: [],
    BLOCKED: [lifecycle.BLOCK],
    CLOSED: [lifecycle.CLOSE],
    ANONYMIZED: [lifecycle.CLOSE, lifecycle.PURGE],
}
TRANSITIONS = [
    lifecycle.BLOCK,
    lifecycle.UNBLOCK,
    lifecycle.CLOSE,
    lifecycle.REOPEN,
    lifecycle.ANONYMIZE,
    lifecycle.CLOSE_AND_ANONYMIZE,
    lifecycle.PURGE,
]


async def in_status(
    repository: CustomerRepository, status: str, n: int = 0, *, days: int = DAYS
) -> Customer:
    stored = await repository.insert(customer(f"c{n}@example.com", f"{n:011d}"), change())
    for step in PATH_TO[status]:
        moved = await repository.transition(
            stored["id"], step, change(step.action), closed_days=days
        )
        assert moved is not None
        stored = moved
    assert stored["status"] == status
    return stored


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("transition", TRANSITIONS, ids=lambda t: f"{t.action}-{t.target}")
async def test_every_transition_from_every_status(
    repository: CustomerRepository, transition: Transition, status: str
) -> None:
    before = await in_status(repository, status)
    if status in transition.sources:
        after = await repository.transition(
            before["id"], transition, change(transition.action), closed_days=DAYS
        )
        assert after is not None and after["status"] == transition.target
        assert await repository.get(before["id"]) == after
        assert after["updated_at"] >= before["updated_at"]
    else:
        with pytest.raises(LifecycleError) as refused:
            await repository.transition(
                before["id"], transition, change(transition.action), closed_days=DAYS
            )
        expected = "customer_blocked" if status == BLOCKED else "invalid_status"
        assert refused.value.code == expected
        assert await repository.get(before["id"]) == before  # nothing changed


async def test_an_unknown_id_is_none(repository: CustomerRepository) -> None:
    for customer_id in ("0" * 24, "nope"):
        assert (
            await repository.transition(
                customer_id, lifecycle.BLOCK, change(lifecycle.BLOCK.action), closed_days=1
            )
            is None
        )


async def test_close_sets_the_deadline_and_reopen_clears_it(
    repository: CustomerRepository,
) -> None:
    closed = await in_status(repository, CLOSED)
    assert closed["purge_after"] and closed["closed_at"]
    assert closed["purge_after"] - closed["closed_at"] == timedelta(days=DAYS)
    reopened = await repository.transition(
        closed["id"], lifecycle.REOPEN, change(lifecycle.REOPEN.action), closed_days=DAYS
    )
    assert reopened is not None
    assert (reopened["closed_at"], reopened["purge_after"], reopened["status"]) == (
        None,
        None,
        ACTIVE,
    )
    assert {k: reopened[k] for k in ("name", "email", "cpf", "address")} == {
        k: closed[k] for k in ("name", "email", "cpf", "address")
    }


async def test_block_keeps_the_reason_until_unblocked(repository: CustomerRepository) -> None:
    stored = await repository.insert(customer(), change())
    blocked = await repository.transition(
        stored["id"],
        lifecycle.BLOCK,
        change(lifecycle.BLOCK.action),
        closed_days=DAYS,
        reason="fraud review #12",
    )
    assert blocked is not None and blocked["blocked_reason"] == "fraud review #12"
    fetched = await repository.get(stored["id"])
    assert fetched is not None and fetched["blocked_reason"] == "fraud review #12"
    unblocked = await repository.transition(
        stored["id"], lifecycle.UNBLOCK, change(lifecycle.UNBLOCK.action), closed_days=DAYS
    )
    assert unblocked is not None and unblocked["blocked_reason"] is None


@pytest.mark.parametrize("status", [BLOCKED, CLOSED, ANONYMIZED])
async def test_only_an_active_customer_takes_a_change(
    repository: CustomerRepository, status: str
) -> None:
    before = await in_status(repository, status)
    with pytest.raises(LifecycleError) as refused:
        await repository.update(before["id"], {"name": "Changed"}, change("update"))
    assert refused.value.code == ("customer_blocked" if status == BLOCKED else "invalid_status")
    assert await repository.get(before["id"]) == before


@pytest.mark.parametrize("via", [lifecycle.ANONYMIZE, lifecycle.CLOSE_AND_ANONYMIZE])
async def test_anonymization_erases_and_keeps_what_it_should(
    repository: CustomerRepository, via: Transition
) -> None:
    stored = await repository.insert(
        {**customer(), "address": {**customer()["address"], "number": "100", "complement": "ap 1"}},
        change(),
    )
    gone = await repository.transition(stored["id"], via, change(via.action), closed_days=DAYS)
    assert gone is not None and await repository.get(stored["id"]) == gone
    assert {k: gone[k] for k in ("name", "email", "phone", "cpf")} == dict.fromkeys(
        ("name", "email", "phone", "cpf")
    )
    erased = ("cep", "street", "neighborhood", "number", "complement")
    assert gone["address"] == {**stored["address"], **dict.fromkeys(erased)}
    assert (gone["address"]["city"], gone["address"]["state"]) == ("São Paulo", "SP")
    assert (gone["id"], gone["created_at"]) == (stored["id"], stored["created_at"])
    assert gone["status"] == ANONYMIZED
    assert gone["anonymized_at"] == gone["closed_at"] == gone["purge_after"]
    # the email and the CPF are free: registering them again is a new customer
    assert not await repository.exists("email", "maria@example.com")
    assert not await repository.exists("cpf", "52998224725")
    again = await repository.insert(customer(), change())
    assert again["id"] != stored["id"]


async def test_many_anonymized_customers_never_clash(repository: CustomerRepository) -> None:
    for n in range(5):
        await in_status(repository, ANONYMIZED, n)
    page = await repository.page(limit=10, statuses=[ANONYMIZED])
    assert len(page.items) == 5
    assert await repository.check() == []


@pytest.mark.parametrize("status", [BLOCKED, CLOSED])
async def test_email_and_cpf_stay_taken_while_blocked_or_closed(
    repository: CustomerRepository, status: str
) -> None:
    held = await in_status(repository, status)
    with pytest.raises(DuplicateCustomer) as clash:
        await repository.insert(customer(held["email"], held["cpf"]), change())
    assert clash.value.fields == ("email", "cpf")
    assert await repository.exists("email", held["email"])


async def test_pages_show_only_the_statuses_asked_for(repository: CustomerRepository) -> None:
    ids = {status: [] for status in STATUSES}  # type: dict[str, list[str]]
    for n in range(24):
        status = STATUSES[n % 4]
        ids[status].append((await in_status(repository, status, n))["id"])
    for wanted in ([ACTIVE], [BLOCKED, CLOSED], [ACTIVE, ANONYMIZED, CLOSED], list(STATUSES)):
        expected = sorted(i for status in wanted for i in ids[status])
        seen, cursor = [], None
        while True:
            page = await repository.page(limit=4, cursor=cursor, statuses=wanted)
            assert all(c["status"] in wanted for c in page.items)
            seen += [c["id"] for c in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == expected, wanted
    everything = await repository.page(limit=100)
    assert len(everything.items) == 24


async def test_filters_answer_only_for_visible_statuses(repository: CustomerRepository) -> None:
    closed = await in_status(repository, CLOSED)
    by_email = {"email": closed["email"]}
    assert (await repository.page(limit=5, filters=by_email, statuses=[ACTIVE])).items == []
    found = await repository.page(limit=5, filters=by_email, statuses=[ACTIVE, CLOSED])
    assert [c["id"] for c in found.items] == [closed["id"]]
    by_cpf = {"cpf": closed["cpf"]}
    assert (await repository.page(limit=5, filters=by_cpf, statuses=[BLOCKED])).items == []


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (lifecycle.BLOCK, lifecycle.BLOCK),
        (lifecycle.BLOCK, lifecycle.CLOSE),
        (lifecycle.ANONYMIZE, lifecycle.BLOCK),
        (lifecycle.CLOSE, lifecycle.ANONYMIZE),
    ],
    ids=lambda t: t.action,
)
async def test_concurrent_transitions_end_in_one_consistent_state(
    repository: CustomerRepository, first: Transition, second: Transition
) -> None:
    """Two DPOs at once, twenty times each: the outcomes are one of the serial orders."""
    stored = await repository.insert(customer(), change())
    attempts = [first, second] * 10
    results = await asyncio.gather(
        *(
            repository.transition(stored["id"], t, change(t.action), closed_days=DAYS)
            for t in attempts
        ),
        return_exceptions=True,
    )
    assert all(isinstance(r, dict | LifecycleError) for r in results), results
    won = [(t, r) for t, r in zip(attempts, results, strict=True) if isinstance(r, dict)]
    final = await repository.get(stored["id"])
    assert final is not None and 1 <= len(won) <= 2

    def serial(order: tuple[tuple[Transition, Any], ...]) -> bool:
        """Whether these successes, in this order, are legal one after the other."""
        status = ACTIVE
        for transition, result in order:
            if status not in transition.sources or result["status"] != transition.target:
                return False
            status = transition.target
        return status == final["status"]

    assert any(serial(order) for order in itertools.permutations(won)), won
    if final["status"] == ANONYMIZED:
        assert final["email"] is None and final["cpf"] is None


async def test_purge_anonymizes_only_closed_customers_past_their_deadline(
    repository: CustomerRepository,
) -> None:
    due = [(await in_status(repository, CLOSED, n, days=0))["id"] for n in range(5)]
    later = await in_status(repository, CLOSED, 10, days=30)
    active = await in_status(repository, ACTIVE, 11)
    blocked = await in_status(repository, BLOCKED, 12)
    assert await repository.purge(now(), 2, change("anonymize")) == 2
    assert await repository.purge(now(), 2, change("anonymize")) == 2
    assert await repository.purge(now(), 2, change("anonymize")) == 1
    assert await repository.purge(now(), 2, change("anonymize")) == 0
    for customer_id in due:
        gone = await repository.get(customer_id)
        assert gone is not None and gone["status"] == ANONYMIZED and gone["cpf"] is None
    for kept in (later, active, blocked):
        assert await repository.get(kept["id"]) == kept
    assert await repository.purge(now() + timedelta(days=31), 10, change("anonymize")) == 1


async def test_anonymization_deletes_the_idempotent_answers_holding_the_customer(
    repository: CustomerRepository,
) -> None:
    stored = await repository.insert(customer(), change())
    other = await repository.insert(customer("o@example.com", "11144477735"), change())
    store = repository.idempotency
    for record, owner in (("r-mine", stored["id"]), ("r-other", other["id"]), ("r-none", None)):
        claim = await store.claim(record, "fp", now())
        await store.complete(record, claim.token, "sealed answer", now(), owner)
    await repository.transition(
        stored["id"], lifecycle.ANONYMIZE, change(lifecycle.ANONYMIZE.action), closed_days=DAYS
    )
    assert (await store.claim("r-mine", "fp", now())).state is ClaimState.CLAIMED  # gone
    assert (await store.claim("r-other", "fp", now())).state is ClaimState.COMPLETED
    assert (await store.claim("r-none", "fp", now())).state is ClaimState.COMPLETED


async def test_each_transition_is_in_the_audit_trail_with_field_names_only(
    repository: CustomerRepository,
) -> None:
    stored = await repository.insert(customer(), change())
    for step in (lifecycle.BLOCK, lifecycle.UNBLOCK, lifecycle.CLOSE, lifecycle.REOPEN):
        await repository.transition(stored["id"], step, change(step.action), closed_days=DAYS)
    await repository.transition(
        stored["id"], lifecycle.ANONYMIZE, change("anonymize", "dpo-1"), closed_days=DAYS
    )
    await repository.purge(now(), 10, change("anonymize", "system:retention"))  # nothing due
    page = await repository.audit.page(limit=20, customer_id=stored["id"])
    entries = list(reversed(page.items))
    assert [e["action"] for e in entries] == [
        "create", "block", "unblock", "close", "reopen", "anonymize"
    ]  # fmt: skip
    by_action = {e["action"]: e for e in entries}
    assert list(by_action["block"]["fields"]) == ["status"]
    assert set(by_action["close"]["fields"]) == {"status", "closed_at", "purge_after"}
    assert {"name", "email", "phone", "cpf", "address", "anonymized_at", "status"} <= set(
        by_action["anonymize"]["fields"]
    )
    assert by_action["anonymize"]["actor"] == "dpo-1"
    text = repr(entries)
    for value in ("Maria", "maria@example.com", "52998224725", "Praça da Sé", "912345678"):
        assert value not in text


async def test_the_sweep_records_its_anonymizations_as_its_own(
    repository: CustomerRepository,
) -> None:
    due = await in_status(repository, CLOSED, days=0)
    assert await repository.purge(now(), 10, change("anonymize", "system:retention")) == 1
    page = await repository.audit.page(limit=5, customer_id=due["id"])
    assert (page.items[0]["action"], page.items[0]["actor"]) == ("anonymize", "system:retention")


async def test_check_names_a_missing_lifecycle_index(repository: CustomerRepository) -> None:
    from service.storage.mongo import MongoRepository
    from service.storage.sqlite import SqliteRepository

    assert await repository.check() == []
    if isinstance(repository, SqliteRepository):
        import sqlite3

        with sqlite3.connect(repository.path) as connection:
            connection.execute("DROP INDEX customers_status_id")
        assert await repository.check() == ["missing index customers_status_id"]
    else:
        assert isinstance(repository, MongoRepository)
        await repository._collection.drop_index("status_id")
        assert await repository.check() == ["missing index status_id"]
        await repository.ensure_schema()  # puts it back
        assert await repository.check() == []


async def test_mongodb_replaces_the_unique_indexes_of_before_the_lifecycle(
    repository: CustomerRepository,
) -> None:
    """A collection from before: plain unique indexes and documents without a status. The
    next start makes the indexes partial and the documents active; then two anonymized
    customers (no email key, no blind index) live side by side."""
    from pymongo import ASCENDING

    from service.storage.mongo import MongoRepository

    if not isinstance(repository, MongoRepository):
        pytest.skip("MongoDB only")
    collection = repository._collection
    old = await repository.insert(customer(), change())
    await collection.update_one({"_id": ObjectId(old["id"])}, {"$unset": {"status": ""}})
    for field in ("email_key", "cpf_index"):
        await collection.drop_index(f"{field}_unique")
        await collection.create_index([(field, ASCENDING)], unique=True, name=f"{field}_unique")
    assert await repository.check() == [
        "missing unique index email_key_unique",
        "missing unique index cpf_index_unique",
    ]
    await repository.ensure_schema()
    assert await repository.check() == []
    migrated = await repository.get(old["id"])
    assert migrated is not None and migrated["status"] == ACTIVE
    for n in (1, 2):
        await in_status(repository, ANONYMIZED, n)
    assert len((await repository.page(limit=5, statuses=[ANONYMIZED])).items) == 2
    with pytest.raises(DuplicateCustomer):  # the partial index still guards the living
        await repository.insert(customer(), change())
