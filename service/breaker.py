"""Circuit breakers: an outage costs its timeout a few times, not on every request.

closed --(N consecutive failures)--> open --(cool-down elapsed)--> half-open
half-open: one probe call goes through; success closes the breaker, failure reopens it
(and restarts the cool-down); other calls are refused while the probe is in flight.

A breaker knows nothing about what it guards: the caller says what a failure is.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from service.settings import BreakerSettings

T = TypeVar("T")
Clock = Callable[[], float]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


class CircuitOpen(Exception):
    """The breaker refused the call: the dependency is skipped until `retry_in_s` passes."""

    def __init__(self, name: str, retry_in_s: float) -> None:
        super().__init__(f"circuit {name} is open; next probe in {retry_in_s:.1f}s")
        self.name = name
        self.retry_in_s = retry_in_s

    @property
    def retry_after_s(self) -> int:
        """Whole seconds, at least 1 (for a Retry-After header)."""
        return max(1, math.ceil(self.retry_in_s))


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failures: int = 5,
        cooldown_s: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if failures < 1 or cooldown_s < 0:
            raise ValueError("a breaker needs failures >= 1 and cooldown_s >= 0")
        self.name = name
        self._threshold = failures
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self._clock() - self._opened_at >= self._cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    async def call(
        self,
        operation: Callable[[], Awaitable[T]],
        failure: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    ) -> T:
        """Run `operation` if the breaker lets it; `failure` exceptions count against it.

        Raises CircuitOpen without calling anything when the breaker is open (or half-open
        with its probe already in flight). Other exceptions (cancellation included) neither
        open nor close the breaker; a cancelled probe frees the slot for the next caller.
        """
        self._admit()
        try:
            result = await operation()
        except failure:
            self._on_failure()
            raise
        except BaseException:
            self._probing = False
            raise
        self._on_success()
        return result

    def _admit(self) -> None:
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return
        assert self._opened_at is not None
        remaining = self._cooldown_s - (self._clock() - self._opened_at)
        raise CircuitOpen(self.name, max(remaining, 0.0))

    def _on_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def _on_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self._threshold:
            self._opened_at = self._clock()
        self._probing = False


class Breakers:
    """The app's breakers by dependency name (`cep:viacep`, `jwks`, `opa`), one settings set."""

    def __init__(self, settings: BreakerSettings, *, clock: Clock = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str) -> CircuitBreaker:
        """The breaker guarding `name`, created on first use."""
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(
                name,
                failures=self._settings.failures,
                cooldown_s=self._settings.cooldown_s,
                clock=self._clock,
            )
            self._breakers[name] = breaker
        return breaker

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(sorted(self._breakers.values(), key=lambda breaker: breaker.name))

    def states(self) -> dict[str, str]:
        return {breaker.name: breaker.state.value for breaker in self}
