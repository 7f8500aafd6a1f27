"""The event store contract, on every adapter: the feed, the sweep, the deliveries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from service.events.model import CursorExpired
from service.storage.base import now
from tests.events.helpers import event, put_events

TYPES = ("customer.created", "customer.updated")


async def test_feed_is_oldest_first_and_pages_resume_after_their_cursor(repository: Any) -> None:
    written = [event(f"{n:024x}") for n in range(7)]
    await put_events(repository, written)
    seen, after = [], 0
    while True:
        page = await repository.events.page(after=after, limit=3)
        seen += page.events
        if not page.has_more:
            break
        after = page.events[-1][0]
    assert [e.id for _, e in seen] == [e.id for e in written]
    positions = [p for p, _ in seen]
    assert positions == sorted(positions) and len(set(positions)) == 7
    assert await repository.events.head() == positions[-1]
    assert (await repository.events.page(after=positions[-1], limit=3)).events == []


async def test_sweep_deletes_the_old_prefix_in_batches_and_expires_older_cursors(
    repository: Any,
) -> None:
    old = now() - timedelta(days=40)
    await put_events(repository, [event(at=old) for _ in range(5)])
    await put_events(repository, [event()])
    first = (await repository.events.page(after=0, limit=10)).events
    cutoff = now() - timedelta(days=30)
    assert await repository.events.sweep(before=cutoff, limit=2) == 2
    assert await repository.events.sweep(before=cutoff, limit=2) == 2
    assert await repository.events.sweep(before=cutoff, limit=2) == 1
    assert await repository.events.sweep(before=cutoff, limit=2) == 0
    with pytest.raises(CursorExpired):
        await repository.events.page(after=first[3][0], limit=10)
    kept = await repository.events.page(after=first[4][0], limit=10)  # the last swept: fine
    assert [e.id for _, e in kept.events] == [first[5][1].id]


async def test_positions_are_never_handed_out_again_after_a_full_sweep(repository: Any) -> None:
    await put_events(repository, [event(at=now() - timedelta(days=40)) for _ in range(3)])
    head = await repository.events.head()
    assert await repository.events.sweep(before=now(), limit=10) == 3
    assert await repository.events.head() == head
    await put_events(repository, [event()])
    ((position, _),) = (await repository.events.page(after=head, limit=10)).events
    assert position > head


async def test_a_new_endpoint_is_owed_events_from_its_start_on(repository: Any) -> None:
    store = repository.events
    await put_events(repository, [event(event_type="customer.created")])
    await store.start_endpoint("crm")
    later = [event(event_type="customer.created"), event(event_type="customer.blocked")]
    await put_events(repository, later)
    assert await store.enqueue("crm", TYPES, limit=100) == 2  # read both, owes one
    claimed = await _claim(store, "a")
    assert [d.event_id for d in claimed] == [later[0].id]
    assert (await store.stats("crm")).pending == 1
    await store.start_endpoint("crm")  # again: the cursor stays
    assert await store.enqueue("crm", TYPES, limit=100) == 0


async def _claim(store: Any, owner: str, at: Any = None, limit: int = 10) -> list[Any]:
    moment = at or now()
    return list(
        await store.claim(
            "crm", owner=owner, now=moment, lease_until=moment + timedelta(seconds=30), limit=limit
        )
    )


async def test_one_customers_events_are_claimed_in_order_and_leased_to_one_owner(
    repository: Any,
) -> None:
    store = repository.events
    await store.start_endpoint("crm")
    a1, b1, a2 = event("a" * 24), event("b" * 24), event("a" * 24)
    await put_events(repository, [a1, b1, a2])
    await store.enqueue("crm", TYPES, limit=100)
    first = await _claim(store, "p1")
    assert [d.event_id for d in first] == [a1.id, b1.id]
    assert await _claim(store, "p2") == []  # leased, and a2 waits for a1
    await store.delivered(first[0], owner="p1")
    (second,) = await _claim(store, "p2")
    assert second.event_id == a2.id and second.body == a2.to_json()
    # a lease that lapsed goes to the next owner; the old owner can no longer settle it
    later = now() + timedelta(seconds=31)
    taken = await _claim(store, "p3", at=later)
    assert sorted(d.event_id for d in taken) == sorted([b1.id, a2.id])
    await store.delivered(first[1], owner="p1")  # p1's lease is gone: nothing happens
    assert (await store.stats("crm")).pending == 2


async def test_failures_wait_for_their_retry_then_dead_letter_and_replay(repository: Any) -> None:
    store = repository.events
    await store.start_endpoint("crm")
    a1, a2 = event("a" * 24), event("a" * 24)
    await put_events(repository, [a1, a2])
    await store.enqueue("crm", TYPES, limit=100)
    (delivery,) = await _claim(store, "p1")
    retry_at = now() + timedelta(seconds=60)
    await store.failed(delivery, owner="p1", next_at=retry_at, error="status 500")
    assert await _claim(store, "p1") == []  # not due, and a2 keeps waiting behind it
    (again,) = await _claim(store, "p1", at=retry_at)
    assert again.event_id == a1.id and again.attempts == 1
    await store.failed(again, owner="p1", next_at=None, error="status 500")
    stats = await store.stats("crm")
    assert (stats.pending, stats.dead) == (1, 1)
    (after_dead,) = await _claim(store, "p1", at=retry_at)
    assert after_dead.event_id == a2.id  # a dead letter no longer holds its customer's queue
    await store.postpone(after_dead, owner="p1", next_at=retry_at + timedelta(seconds=5))
    assert await store.replay("crm", TYPES, since=now() - timedelta(minutes=1)) == 2
    stats = await store.stats("crm")
    assert (stats.pending, stats.dead) == (2, 0)
    (replayed,) = await _claim(store, "p1")
    assert (replayed.event_id, replayed.attempts) == (a1.id, 0)
