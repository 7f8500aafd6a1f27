"""The OPA sidecar engine: an OPA server over HTTP (`opa run -s policies/`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from service.authz.decision import Decision, PolicyEngineError
from service.breaker import CircuitBreaker, CircuitOpen

log = logging.getLogger(__name__)

OPA_DECISION_PATH = "/v1/data/customers/authz/decision"


class OpaPolicyEngine:
    """An OPA server: POST {opa_url}/v1/data/customers/authz/decision with {"input": ...}."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        opa_url: str,
        timeout_s: float,
        *,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._session = session
        # Open after repeated failures: 503 at once, no call (nor its timeout) until the cool-down.
        self._breaker = breaker or CircuitBreaker("opa")
        self._url = opa_url.rstrip("/") + OPA_DECISION_PATH
        self._health_url = opa_url.rstrip("/") + "/health"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def check(self) -> None:
        """OPA's own health endpoint: 200 once its policies are loaded."""
        try:
            async with self._session.get(self._health_url, timeout=self._timeout) as resp:
                healthy = resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            healthy = False
        if not healthy:
            raise PolicyEngineError()

    async def decide(self, input: Mapping[str, Any]) -> Decision:
        try:
            body = await self._breaker.call(lambda: self._post(input), PolicyEngineError)
        except CircuitOpen:
            raise PolicyEngineError(
                "The authorization policy engine kept failing; retry after its cool-down."
            ) from None
        if "result" not in body:
            return Decision.deny("policy decision is undefined")
        return Decision.from_result(body["result"])

    async def _post(self, input: Mapping[str, Any]) -> dict[str, Any]:
        try:
            async with self._session.post(
                self._url, json={"input": input}, timeout=self._timeout
            ) as resp:
                status = resp.status
                body = await resp.json(content_type=None) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.error("OPA policy engine failed: %r", exc)
            raise PolicyEngineError() from exc
        if status != 200 or not isinstance(body, dict):
            log.error("OPA policy engine answered HTTP %s: %.200r", status, body)
            raise PolicyEngineError()
        return body

    async def close(self) -> None:
        return None  # the session belongs to the app
