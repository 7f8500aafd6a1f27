"""A policy engine that counts its decisions: `policy_decisions_total{engine, result}` and
`policy_decision_duration_seconds{engine}`.

A wrapper, not code inside each engine: both engines (and any decision cache inside them)
are measured the same way, from the caller's side.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Histogram

from service.authz.decision import Decision, PolicyEngine
from service.batching import Batch
from service.metrics import Update


class MeteredPolicyEngine:
    def __init__(
        self,
        engine: PolicyEngine,
        name: str,
        decisions: Counter,
        latency: Histogram,
        deferred: Batch[Update],
    ) -> None:
        self.engine = engine
        self._note = deferred.add  # updates applied in batches (service/batching.py)
        # Children bound once: a decision costs two increments, no label lookup.
        self._allow = decisions.labels(name, "allow")
        self._deny = decisions.labels(name, "deny")
        self._error = decisions.labels(name, "error")
        self._latency = latency.labels(name)

    async def decide(self, input: Mapping[str, Any]) -> Decision:
        started = time.perf_counter()
        try:
            decision = await self.engine.decide(input)
        except Exception:  # a cancelled request is no decision at all
            self._note((self._error.inc, 1))
            raise
        finally:
            self._note((self._latency.observe, time.perf_counter() - started))
        self._note(((self._allow if decision.allow else self._deny).inc, 1))
        return decision

    async def check(self) -> None:
        await self.engine.check()

    async def close(self) -> None:
        await self.engine.close()
