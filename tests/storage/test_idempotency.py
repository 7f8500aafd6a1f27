"""The Idempotency-Key store, on every adapter: one claim wins, expiry by the given clock."""

import asyncio
from datetime import UTC, datetime, timedelta

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
