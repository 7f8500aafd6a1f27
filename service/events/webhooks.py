"""The webhook relay: publishes the outbox to each configured endpoint.

Per endpoint, one task: move new events of its types into its deliveries (kept in the
database, so they survive restarts), lease the due ones, POST each with Standard Webhooks
headers, and record the outcome. A delivery is leased to one process at a time (with N
workers it is sent once, not N times); a process that dies mid-delivery loses its lease
after `LEASE_S` and another one sends it again: at least once.

- Order: a delivery is due only when no older delivery of the same customer is pending at
  that endpoint, so one customer's events arrive in commit order. Customers do not wait
  for each other: a batch sends the oldest event of up to `BATCH` customers concurrently.
- Retries: any 2xx is a delivery; anything else (or no answer within `TIMEOUT_S`) is
  retried after `retry_delay(attempts)`: exponential from about 1 s with jitter, for
  `MAX_ATTEMPTS` attempts over about 17 minutes, then the delivery is dead-lettered (kept,
  counted in /health/ready and /metrics, sent again by `events replay`).
- Breaker: each endpoint has its circuit breaker (`webhook:<name>`); while it is open the
  endpoint is not called and nothing counts as an attempt.
- The API never waits for any of it: writes only add the event row; the relay runs beside.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from standardwebhooks import Webhook

from service.breaker import BreakerState, CircuitBreaker, CircuitOpen
from service.errors import ServiceUnavailable
from service.events.store import Delivery, DeliveryStats, EventStore
from service.settings import WebhookSettings

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0
LEASE_S = 30.0  # longer than an attempt can take (TIMEOUT_S), so a live owner keeps it
BASE_DELAY_S = 1.0
MAX_DELAY_S = 600.0
MAX_ATTEMPTS = 11  # delays 1, 2, 4 ... 512 s (+ jitter): about 17 minutes in all
BATCH = 32
IDLE_POLL_S = 0.5
STATS_EVERY_S = 2.0  # the counts behind lag and dead letters: an index count, not free
ENQUEUE_LIMIT = 500
MAX_ERROR_CHARS = 200


def retry_delay(attempts: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before the next attempt, after `attempts` failed ones: 1, 2, 4 ... s, capped,
    plus up to 25 % jitter (so endpoints that failed together do not retry in step; the
    jitter only adds, so the schedule never shrinks below its minimum)."""
    base = min(MAX_DELAY_S, BASE_DELAY_S * 2.0 ** (attempts - 1))
    return base * (1 + 0.25 * rng())


class DeliveryFailed(Exception):
    """The endpoint did not take the delivery (status, timeout, connection)."""


@dataclass(frozen=True)
class Signer:
    """Standard Webhooks signatures: one `v1,<base64 HMAC-SHA256>` per secret, so a
    receiver that knows the old or the new secret verifies during a rotation."""

    keys: tuple[bytes, ...]

    def headers(self, event_id: str, body: bytes, at: datetime) -> dict[str, str]:
        text = body.decode()
        signatures = " ".join(Webhook(key).sign(event_id, at, text) for key in self.keys)
        return {
            "webhook-id": event_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signatures,
            "content-type": "application/json",
        }


@dataclass
class Endpoint:
    settings: WebhookSettings
    signer: Signer
    breaker: CircuitBreaker
    stats: DeliveryStats = field(default_factory=lambda: DeliveryStats(0, 0, None))
    stats_at: datetime = datetime.min.replace(tzinfo=UTC)

    @property
    def name(self) -> str:
        return self.settings.name


class Relay:
    def __init__(
        self,
        store: EventStore,
        endpoints: Sequence[Endpoint],
        session: aiohttp.ClientSession,
        *,
        wall_clock: Callable[[], datetime],
        deliveries: Counter | None = None,
        idle_poll_s: float = IDLE_POLL_S,
    ) -> None:
        self._store = store
        self.endpoints = {endpoint.name: endpoint for endpoint in endpoints}
        self._session = session
        self._now = wall_clock
        self._deliveries = deliveries
        self._idle_poll_s = idle_poll_s
        self._owner = secrets.token_hex(8)  # this process's name on its leases
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()  # set by `close`: stop waiting for the next round
        self._stopping = False

    async def start(self) -> None:
        for endpoint in self.endpoints.values():
            await self._store.start_endpoint(endpoint.name)
            endpoint.stats = await self._store.stats(endpoint.name)
        self._tasks = [
            asyncio.create_task(self._run(endpoint), name=f"webhook:{endpoint.name}")
            for endpoint in self.endpoints.values()
        ]

    async def close(self) -> None:
        """Stop after the round in flight: its attempts end (within TIMEOUT_S) and their
        outcomes are recorded. A round still running after that is cancelled; its leases
        lapse and whichever process runs next sends those deliveries again."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=TIMEOUT_S + 1)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, endpoint: Endpoint) -> None:
        while not self._stopping:
            busy = False
            try:
                busy = await self.step(endpoint)
            except ServiceUnavailable:
                pass  # the database is down: the next round tries again
            except Exception:  # a bug must not stop deliveries for good
                log.exception("webhook relay round failed", extra={"endpoint": endpoint.name})
            if not busy and not self._stopping:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._idle_poll_s):
                        await self._wake.wait()

    async def step(self, endpoint: Endpoint) -> bool:
        """One round for `endpoint`; True when there may be more to do right away."""
        settings = endpoint.settings
        read = await self._store.enqueue(endpoint.name, settings.types, limit=ENQUEUE_LIMIT)
        now = self._now()
        claimed: list[Delivery] = []
        if endpoint.breaker.state is not BreakerState.OPEN:
            claimed = await self._store.claim(
                endpoint.name,
                owner=self._owner,
                now=now,
                lease_until=now + timedelta(seconds=LEASE_S),
                limit=BATCH,
            )
            await asyncio.gather(*(self._deliver(endpoint, delivery) for delivery in claimed))
        if claimed or (now - endpoint.stats_at).total_seconds() >= STATS_EVERY_S:
            endpoint.stats = await self._store.stats(endpoint.name)
            endpoint.stats_at = now
        return read >= ENQUEUE_LIMIT or len(claimed) >= BATCH

    async def _deliver(self, endpoint: Endpoint, delivery: Delivery) -> None:
        try:
            await endpoint.breaker.call(lambda: self._post(endpoint, delivery), DeliveryFailed)
        except CircuitOpen as exc:
            retry_at = self._now() + timedelta(seconds=exc.retry_in_s)
            await self._store.postpone(delivery, owner=self._owner, next_at=retry_at)
            return
        except DeliveryFailed as exc:
            attempts = delivery.attempts + 1
            next_at = None
            if attempts < MAX_ATTEMPTS:
                next_at = self._now() + timedelta(seconds=retry_delay(attempts))
            await self._store.failed(
                delivery, owner=self._owner, next_at=next_at, error=str(exc)[:MAX_ERROR_CHARS]
            )
            self._count(endpoint, "failed" if next_at else "dead")
            return
        await self._store.delivered(delivery, owner=self._owner)
        self._count(endpoint, "delivered")

    async def _post(self, endpoint: Endpoint, delivery: Delivery) -> None:
        headers = endpoint.signer.headers(delivery.event_id, delivery.body, self._now())
        try:
            async with self._session.post(
                endpoint.settings.url,
                data=delivery.body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
                allow_redirects=False,
            ) as response:
                await response.read()
                status = response.status
        except TimeoutError:
            raise DeliveryFailed(f"no answer within {TIMEOUT_S:g}s") from None
        except aiohttp.ClientError as exc:
            raise DeliveryFailed(type(exc).__name__) from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"status {status}")

    def _count(self, endpoint: Endpoint, outcome: str) -> None:
        if self._deliveries is not None:
            self._deliveries.labels(endpoint.name, outcome).inc()

    def lag_s(self, endpoint: Endpoint) -> float:
        """Seconds since the oldest event still owed to `endpoint` occurred (0: none owed)."""
        oldest = endpoint.stats.oldest_pending
        return 0.0 if oldest is None else max(0.0, (self._now() - oldest).total_seconds())


class RelayCollector(Collector):
    """`webhook_delivery_lag_seconds`, `webhook_pending` and `webhook_dead_letters` per
    endpoint, from the relay's last round (at most a few seconds old)."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def collect(self) -> Iterator[Metric]:
        families = {
            "lag": GaugeMetricFamily(
                "webhook_delivery_lag_seconds",
                "Age of the oldest event still owed to the endpoint (0: none)",
                labels=["endpoint"],
            ),
            "pending": GaugeMetricFamily(
                "webhook_pending", "Deliveries owed to the endpoint", labels=["endpoint"]
            ),
            "dead": GaugeMetricFamily(
                "webhook_dead_letters",
                "Deliveries given up after every attempt (`events replay` sends them again)",
                labels=["endpoint"],
            ),
        }
        for endpoint in self._relay.endpoints.values():
            families["lag"].add_metric([endpoint.name], self._relay.lag_s(endpoint))
            families["pending"].add_metric([endpoint.name], endpoint.stats.pending)
            families["dead"].add_metric([endpoint.name], endpoint.stats.dead)
        yield from families.values()
