"""The Idempotency-Key store, on every adapter: one claim wins, expiry by the given clock."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.storage.idempotency import IN_FLIGHT_LEASE, RESPONSE_TTL, ClaimState, record_id

# In the future: MongoDB's TTL monitor (and mongomock) delete what expired by the real
# clock; these tests decide expiry by the clock they pass.
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)


async def test_claim_then_in_flight_then_mismatch_then_completed(repository):
    store = repository.idempotency
    claim = await store.claim("r", "body-1", T0)
    assert claim.state is ClaimState.CLAIMED and claim.token
    assert (await store.claim("r", "body-1", T0)).state is ClaimState.IN_FLIGHT
    assert (await store.claim("r", "body-2", T0)).state is ClaimState.MISMATCH
    await store.complete("r", claim.token, "sealed answer", T0)
    replay = await store.claim("r", "body-1", T0 + RESPONSE_TTL - timedelta(seconds=1))
    assert (replay.state, replay.response) == (ClaimState.COMPLETED, "sealed answer")
    assert (await store.claim("r", "body-2", T0)).state is ClaimState.MISMATCH


async def test_a_kept_answer_expires_after_a_day(repository):
    store = repository.idempotency
    claim = await store.claim("r", "body-1", T0)
    await store.complete("r", claim.token, "first", T0)
    later = await store.claim("r", "body-2", T0 + RESPONSE_TTL)  # expired: a new request
    assert later.state is ClaimState.CLAIMED


async def test_a_released_claim_runs_again(repository):
    store = repository.idempotency
    claim = await store.claim("r", "body-1", T0)
    await store.release("r", claim.token)
    assert (await store.claim("r", "body-1", T0)).state is ClaimState.CLAIMED


async def test_a_stale_claim_is_taken_over_and_its_owner_can_no_longer_complete(repository):
    store = repository.idempotency
    crashed = await store.claim("r", "body-1", T0)
    retry = await store.claim("r", "body-1", T0 + IN_FLIGHT_LEASE)
    assert retry.state is ClaimState.CLAIMED and retry.token != crashed.token
    await store.complete("r", crashed.token, "from the dead", T0 + IN_FLIGHT_LEASE)
    assert (await store.claim("r", "body-1", T0 + IN_FLIGHT_LEASE)).state is ClaimState.IN_FLIGHT
    await store.complete("r", retry.token, "the answer", T0 + IN_FLIGHT_LEASE)
    assert (await store.claim("r", "body-1", T0 + IN_FLIGHT_LEASE)).response == "the answer"


async def test_fifty_concurrent_claims_of_one_key_have_one_winner(repository):
    store = repository.idempotency
    claims = await asyncio.gather(*(store.claim("r", "body", T0) for _ in range(50)))
    states = [claim.state for claim in claims]
    assert states.count(ClaimState.CLAIMED) == 1
    assert states.count(ClaimState.IN_FLIGHT) == 49


async def test_sweep_deletes_only_expired_records(repository):
    store = repository.idempotency
    for name in ("old", "new"):
        claim = await store.claim(name, "body", T0)
        moment = T0 if name == "old" else T0 + timedelta(hours=1)
        await store.complete(name, claim.token, name, moment)
    assert await store.sweep(T0 + RESPONSE_TTL) == 1
    assert (await store.claim("new", "body", T0 + RESPONSE_TTL)).response == "new"
    assert (await store.claim("old", "body", T0 + RESPONSE_TTL)).state is ClaimState.CLAIMED


def test_record_ids_keep_callers_and_keys_apart():
    assert record_id("ana", "k") != record_id("bob", "k")
    assert record_id('a","b', "c") != record_id("a", '","b","c')  # no ambiguous joining
    assert record_id("ana", "k") == record_id("ana", "k")


# --- finding #1 of the third review: a claim names the customer its request stores ---


async def test_a_claim_plans_a_customer_id_and_a_take_over_keeps_it(repository):
    store = repository.idempotency
    crashed = await store.claim("r1", "body", T0)
    assert len(crashed.customer_id) == 24 and crashed.previous == ""
    in_flight = await store.claim("r1", "body", T0)
    assert in_flight.state is ClaimState.IN_FLIGHT
    assert in_flight.customer_id == crashed.customer_id  # a retry can look the customer up
    taken = await store.claim("r1", "body", T0 + IN_FLIGHT_LEASE)
    assert taken.state is ClaimState.CLAIMED
    assert taken.previous == taken.customer_id == crashed.customer_id
    assert taken.token != crashed.token  # a new owner: the dead one cannot complete
    other_body = await store.claim("r2", "body-1", T0)
    fresh = await store.claim("r2", "body-2", T0 + IN_FLIGHT_LEASE)
    assert fresh.previous == "" and fresh.customer_id != other_body.customer_id


async def test_an_expired_in_flight_claim_outlives_the_sweep_for_a_day(repository):
    store = repository.idempotency
    claim = await store.claim("r", "body", T0)
    await store.sweep(T0 + IN_FLIGHT_LEASE + timedelta(hours=23))
    taken = await store.claim("r", "body", T0 + IN_FLIGHT_LEASE + timedelta(hours=23))
    assert taken.previous == claim.customer_id


# --- finding #6 of the third review: the table grew without bound, swept in one go ---


@pytest.fixture
def small_cap(monkeypatch):
    from service.storage import mongo_idempotency as mongo
    from service.storage import sqlite_idempotency

    for module in (sqlite_idempotency, mongo):
        monkeypatch.setattr(module, "MAX_LIVE_KEYS", 5)
    return 5


async def test_a_caller_holds_at_most_max_live_keys(repository, small_cap):
    store = repository.idempotency
    mine = [record_id("caller-a", f"k{i}") for i in range(small_cap + 3)]
    claims = [await store.claim(record, "body", T0) for record in mine]
    states = [claim.state for claim in claims]
    assert states[:small_cap] == [ClaimState.CLAIMED] * small_cap
    assert states[small_cap:] == [ClaimState.TOO_MANY] * 3
    # the caller's own retries still answer; another caller is not affected
    assert (await store.claim(mine[0], "body", T0)).state is ClaimState.IN_FLIGHT
    assert (await store.claim(record_id("caller-b", "k0"), "body", T0)).state is ClaimState.CLAIMED
    # once its records expire, the caller may claim again
    later = T0 + IN_FLIGHT_LEASE
    assert (await store.claim(mine[-1], "body", later)).state is ClaimState.CLAIMED


async def test_a_caller_over_the_cap_gets_429_with_a_code(make_client, small_cap) -> None:
    client = await make_client()
    # a validator's 422 (a CPF whose check digits fail) is kept too: each key stays live
    body = {
        "name": "Maria",
        "email": "m@example.com",
        "phone": "(11) 91234-5678",
        "cep": "01001-000",
        "cpf": "111.111.111-12",
    }
    statuses = []
    for i in range(small_cap + 2):
        response = await client.post(
            "/api/v1/customers", json=body, headers={"Idempotency-Key": f"k{i}"}
        )
        statuses.append(response.status)
    assert statuses[:small_cap] == [422] * small_cap
    assert statuses[small_cap:] == [429, 429]
    problem = await response.json()
    assert problem["code"] == "idempotency_keys_exhausted" and response.headers["Retry-After"]


async def test_a_sweep_deletes_in_bounded_batches(repository, monkeypatch):
    from service.storage import mongo_idempotency as mongo
    from service.storage import sqlite_idempotency

    for module in (sqlite_idempotency, mongo):
        monkeypatch.setattr(module, "SWEEP_BATCH", 7)
    store = repository.idempotency
    for i in range(30):
        claim = await store.claim(record_id(f"c{i}", "k"), "body", T0)
        await store.complete(record_id(f"c{i}", "k"), claim.token, "answer", T0)
    keep = await store.claim(record_id("live", "k"), "body", T0 + RESPONSE_TTL)
    assert await store.sweep(T0 + RESPONSE_TTL) == 30
    live = await store.claim(record_id("live", "k"), "body", T0 + RESPONSE_TTL)
    assert live.state is ClaimState.IN_FLIGHT and live.customer_id == keep.customer_id


async def test_the_sweep_runs_one_short_transaction_per_batch(tmp_path, codec, monkeypatch):
    from service.storage import open_repository, sqlite_idempotency

    monkeypatch.setattr(sqlite_idempotency, "SWEEP_BATCH", 10)
    repository = open_repository(f"sqlite:///{tmp_path / 'c.db'}", "customers", codec)
    await repository.ensure_schema()
    store: Any = repository.idempotency
    for i in range(35):
        claim = await store.claim(record_id(f"c{i}", "k"), "body", T0)
        await store.complete(record_id(f"c{i}", "k"), claim.token, "a" * 2000, T0)
    writes = []
    original = store._write

    async def counted(work):
        writes.append(work)
        return await original(work)

    monkeypatch.setattr(store, "_write", counted)
    assert await store.sweep(T0 + RESPONSE_TTL) == 35
    assert len(writes) == 4 + 1  # 10 + 10 + 10 + 5, then the incremental vacuum
    await repository.close()


async def test_a_new_sqlite_file_limits_its_wal_and_gives_freed_pages_back(tmp_path, codec):
    import sqlite3

    from service.storage import open_repository
    from service.storage.sqlite_schema import JOURNAL_SIZE_LIMIT, connect

    path = tmp_path / "c.db"
    repository = open_repository(f"sqlite:///{path}", "customers", codec)
    await repository.ensure_schema()
    store = repository.idempotency
    for i in range(300):
        claim = await store.claim(record_id(f"c{i}", "k"), "body", T0)
        await store.complete(record_id(f"c{i}", "k"), claim.token, "a" * 4000, T0)
    check = connect(path)
    assert check.execute("PRAGMA journal_size_limit").fetchone()[0] == JOURNAL_SIZE_LIMIT
    assert check.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    before = check.execute("PRAGMA page_count").fetchone()[0]
    await store.sweep(T0 + RESPONSE_TTL)
    after = check.execute("PRAGMA page_count").fetchone()[0]
    assert check.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert after < before / 2  # the pages of 300 answers went back, not kept as free
    check.close()
    await repository.close()
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
