"""The webhook relay on every adapter, one round at a time on a fake clock: signatures,
retries and dead letters, per-customer order, the breaker, leases between processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter
from standardwebhooks import Webhook, WebhookVerificationError

from service.breaker import CircuitBreaker
from service.events import webhooks
from service.events.webhooks import (
    MAX_ATTEMPTS,
    Endpoint,
    Relay,
    RelayCollector,
    Signer,
    retry_delay,
)
from service.settings import WebhookSettings
from service.storage.base import now
from tests.events.helpers import event, put_events
from tests.events.receiver import Receiver, hmac_signature, new_secret

TYPES = ("customer.created", "customer.updated", "customer.blocked")


class Wall:
    """A wall clock that moves only when told to (and the breaker's monotonic twin)."""

    def __init__(self) -> None:
        self.at = now()
        self.offset = 0.0

    def __call__(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return 1000.0 + self.offset

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)
        self.offset += seconds


@pytest.fixture
async def receiver(aiohttp_server: Any) -> AsyncIterator[tuple[Receiver, str]]:
    fake = Receiver()
    server = await aiohttp_server(fake.make_app())
    yield fake, str(server.make_url("/hook"))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def endpoint(url: str, wall: Wall, *keys: bytes, types: tuple[str, ...] = TYPES) -> Endpoint:
    settings = WebhookSettings(url=url, types=types, name="crm", secret_file="unused")
    breaker = CircuitBreaker("webhook:crm", failures=5, cooldown_s=30, clock=wall.monotonic)
    return Endpoint(settings, Signer(keys or (new_secret()[1],)), breaker)


async def started(repository: Any, session: Any, hook: Endpoint, wall: Wall) -> Relay:
    counter = Counter(
        "webhook_deliveries", "", ["endpoint", "outcome"], registry=CollectorRegistry()
    )
    relay = Relay(repository.events, [hook], session, wall_clock=wall, deliveries=counter)
    await relay.start()
    await relay.close()  # no background task: the test drives `step` itself
    return relay


def test_the_retry_schedule_starts_near_a_second_and_spans_ten_minutes() -> None:
    lowest = [retry_delay(n, rng=lambda: 0.0) for n in range(1, MAX_ATTEMPTS)]
    highest = [retry_delay(n, rng=lambda: 0.999) for n in range(1, MAX_ATTEMPTS)]
    assert MAX_ATTEMPTS >= 5 and lowest[0] == 1.0 and highest[0] < 1.3
    assert sum(lowest) >= 600  # at least ten minutes from the first attempt to the last
    assert lowest == sorted(lowest) and all(h > lo for h, lo in zip(highest, lowest, strict=True))


def test_signatures_verify_with_standardwebhooks_and_an_independent_hmac() -> None:
    (old, old_key), (new, new_key) = new_secret(), new_secret()
    body = event().to_json()
    at = now()
    headers = Signer((old_key, new_key)).headers("evt_1", body, at)
    assert headers["webhook-id"] == "evt_1"
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    signatures = headers["webhook-signature"].split(" ")
    assert signatures == [
        hmac_signature(key, "evt_1", headers["webhook-timestamp"], body)
        for key in (old_key, new_key)
    ]
    for secret in (old, new):  # a receiver that knows either secret verifies
        assert Webhook(secret).verify(body, headers) == orjson.loads(body)
    with pytest.raises(WebhookVerificationError, match="signature"):
        Webhook(new_secret()[0]).verify(body, headers)
    with pytest.raises(WebhookVerificationError, match="signature"):
        Webhook(old).verify(body + b" ", headers)


async def test_a_delivery_is_the_event_signed_with_its_id(
    repository: Any, receiver: Any, session: Any
) -> None:
    fake, url = receiver
    wall = Wall()
    secret, key = new_secret()
    hook = endpoint(url, wall, key, types=("customer.created",))
    relay = await started(repository, session, hook, wall)
    wanted, unwanted = event(event_type="customer.created"), event(event_type="customer.blocked")
    await put_events(repository, [unwanted, wanted])
    await relay.step(hook)
    (got,) = fake.received
    assert got.headers["webhook-id"] == wanted.id and got.body == wanted.to_json()
    assert Webhook(secret).verify(got.body, got.headers)["id"] == wanted.id
    assert got.headers["Content-Type"] == "application/json"
    await relay.step(hook)
    assert len(fake.received) == 1 and hook.stats.pending == 0


async def test_failures_retry_with_backoff_then_dead_letter(
    repository: Any, receiver: Any, session: Any
) -> None:
    fake, url = receiver
    fake.status = 503
    wall = Wall()
    hook = endpoint(url, wall)
    hook.breaker = CircuitBreaker("webhook:crm", failures=1000, clock=wall.monotonic)
    relay = await started(repository, session, hook, wall)
    await put_events(repository, [event()])
    await relay.step(hook)
    assert len(fake.received) == 1
    await relay.step(hook)
    assert len(fake.received) == 1  # not before its retry time
    for attempt in range(2, MAX_ATTEMPTS + 1):
        wall.advance(retry_delay(attempt - 1, rng=lambda: 1.0))
        await relay.step(hook)
        assert len(fake.received) == attempt
    wall.advance(3600)
    await relay.step(hook)
    assert len(fake.received) == MAX_ATTEMPTS
    assert (hook.stats.pending, hook.stats.dead) == (0, 1)
    assert len(set(fake.ids())) == 1
    fake.status = 204
    assert await repository.events.replay("crm", TYPES, since=wall() - timedelta(days=1)) == 1
    await relay.step(hook)
    assert len(fake.received) == MAX_ATTEMPTS + 1 and (hook.stats.pending, hook.stats.dead) == (
        0,
        0,
    )


async def test_one_customers_events_keep_their_order_while_others_go_on(
    repository: Any, receiver: Any, session: Any, aiohttp_server: Any
) -> None:
    fake, url = receiver
    wall = Wall()
    hook = endpoint(url, wall)
    relay = await started(repository, session, hook, wall)
    a1, b1, a2, a3 = (event(c * 24) for c in "abaa")
    await put_events(repository, [a1, b1, a2, a3])
    fake.status = 500
    await relay.step(hook)  # a1 and b1 fail
    assert sorted(fake.ids()) == sorted([a1.id, b1.id])
    fake.status = 200
    wall.advance(2)
    for _ in range(4):
        await relay.step(hook)
    delivered = [i for i in fake.ids()[2:]]
    assert delivered.index(a1.id) < delivered.index(a2.id) < delivered.index(a3.id)
    assert sorted(delivered) == sorted([a1.id, b1.id, a2.id, a3.id])


async def test_an_open_breaker_stops_calls_without_spending_attempts(
    repository: Any, receiver: Any, session: Any
) -> None:
    fake, url = receiver
    fake.status = 500
    wall = Wall()
    hook = endpoint(url, wall)
    relay = await started(repository, session, hook, wall)
    await put_events(repository, [event(f"{n:024x}") for n in range(8)])
    await relay.step(hook)  # 8 customers at once: 5 failures open the breaker
    calls = len(fake.received)
    assert 5 <= calls <= 8 and hook.breaker.state.value == "open"
    wall.advance(10)
    await relay.step(hook)
    assert len(fake.received) == calls  # open: nothing sent
    fake.status = 200
    wall.advance(31)
    for _ in range(3):
        await relay.step(hook)
        wall.advance(1)
    assert len(set(fake.ids())) == 8 and hook.stats.pending == 0 and hook.stats.dead == 0


async def test_a_hanging_receiver_times_out_and_is_retried(
    repository: Any, receiver: Any, session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "TIMEOUT_S", 0.2)
    fake, url = receiver
    fake.hang = True
    wall = Wall()
    hook = endpoint(url, wall)
    relay = await started(repository, session, hook, wall)
    await put_events(repository, [event()])
    await relay.step(hook)
    assert len(fake.received) == 1 and hook.stats.pending == 1
    (metric,) = [m for m in RelayCollector(relay).collect() if m.name == "webhook_pending"]
    assert metric.samples[0].labels == {"endpoint": "crm"} and metric.samples[0].value == 1


async def test_two_processes_deliver_each_event_once(
    repository: Any, receiver: Any, session: Any
) -> None:
    fake, url = receiver
    wall = Wall()
    hooks = [endpoint(url, wall), endpoint(url, wall)]
    relays = [await started(repository, session, hook, wall) for hook in hooks]
    written = [event(f"{n % 7:024x}") for n in range(40)]
    await put_events(repository, written)
    for _ in range(12):
        await asyncio.gather(*(relay.step(hook) for relay, hook in zip(relays, hooks, strict=True)))
    assert sorted(fake.ids()) == sorted(e.id for e in written)  # each once, none lost
    for customer in {e.customer_id for e in written}:
        mine = [e.id for e in written if e.customer_id == customer]
        assert [i for i in fake.ids() if i in mine] == mine


async def test_a_clean_stop_lets_the_attempt_in_flight_finish_and_records_it(
    repository: Any, aiohttp_server: Any, session: Any
) -> None:
    answered: list[str] = []

    async def slow(request: Any) -> Any:
        from aiohttp import web

        await asyncio.sleep(0.5)
        answered.append(request.headers["webhook-id"])
        return web.Response(status=204)

    from aiohttp import web

    app = web.Application()
    app.router.add_post("/hook", slow)
    server = await aiohttp_server(app)
    wall = Wall()
    hook = endpoint(str(server.make_url("/hook")), wall)
    relay = Relay(repository.events, [hook], session, wall_clock=wall, idle_poll_s=0.05)
    await relay.start()
    written = event()
    await put_events(repository, [written])
    async with asyncio.timeout(10):
        while (await repository.events.stats("crm")).pending == 0:
            await asyncio.sleep(0.01)  # enqueued
        await asyncio.sleep(0.2)  # and in flight
    await relay.close()
    assert answered == [written.id]
    assert (await repository.events.stats("crm")).pending == 0  # recorded, not abandoned
