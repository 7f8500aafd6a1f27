"""`Idempotency-Key` on POST (Stripe semantics), as a decorator around the handler.

- The first answer to a key is kept `RESPONSE_TTL` (24 h) and replayed to a retry with the
  same body, with `Idempotent-Replayed: true`.
- The same key with another body: 422 `idempotency_key_reused`. A retry while the first
  request still runs: 409 with `Retry-After: 1`. A key that is empty, longer than 255
  characters or not printable ASCII: 400.
- Kept: every answer the handler gave below 500 (201, and 4xx such as a validator's 422, as
  Stripe does: the request ran and this was its result). Not kept: 5xx (a 503 means
  nothing was stored, so the retry runs again), and what is refused before the handler
  runs (401, 403, 400/415/422 from parsing the body), which never claims the key.
- Keys belong to a caller: the token's issuer and subject, and the fields the policy
  masks for this call, so a token with fewer rights never sees a replay of an answer
  made for more.
- The stored answer carries personal data: it is sealed with the PII codec; the request
  body is kept only as a keyed digest of its canonical JSON.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime

from aiohttp import web
from aiohttp.typedefs import Handler

from service.api.problems import error_response
from service.errors import (
    IdempotencyInFlight,
    IdempotencyKeyExpired,
    IdempotencyKeyReused,
    IdempotencyKeysExhausted,
    MalformedRequest,
    ServiceUnavailable,
)
from service.storage.idempotency import MAX_LIVE_KEYS, ClaimState, record_id
from service.storage.pii import PiiKeyError
from service.typedefs import (
    decision_key,
    pii_codec_key,
    principal_key,
    repository_key,
    request_data_key,
    wall_clock_key,
)

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# printable ASCII; no leading/trailing space (a proxy could strip it and change the key)
_KEY = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
_KEPT_HEADERS = ("Content-Type", "Location")
_PURPOSE = "idempotent-response"
# OpenAPI: the header parameter of the operations this decorator wraps.
OPENAPI_PARAMETER = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        "pattern": r"^[!-~]([ -~]*[!-~])?$",  # _KEY, in ECMA-262 form
    },
    "description": (
        "Makes a retry safe: the first answer for this key is kept 24 h and replayed "
        f"(`{REPLAYED_HEADER}: true`) to a retry with the same body; another body with the "
        "same key is 422 `idempotency_key_reused`; a retry while the first runs is 409."
    ),
}


def _key(request: web.Request) -> str | None:
    values = request.headers.getall(HEADER, [])
    if not values:
        return None
    if len(values) > 1:
        raise MalformedRequest(f"Send one {HEADER} header, not {len(values)}.")
    key = values[0]
    if len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise MalformedRequest(
            f"The {HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters."
        )
    return key


def _caller(request: web.Request) -> str:
    principal = request[principal_key]
    masked = sorted(request[decision_key].masked_fields)
    return json.dumps([principal.issuer, principal.subject, masked])


def canonical_json(value: object) -> bytes:
    """One byte string per JSON value, whatever the key order or spacing it arrived with."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _replay(sealed: bytes) -> web.Response:
    kept = json.loads(sealed)
    headers = {**kept["headers"], REPLAYED_HEADER: "true"}
    return web.Response(body=kept["body"].encode(), status=kept["status"], headers=headers)


def _kept(response: web.Response) -> bytes:
    assert isinstance(response.body, bytes), "idempotent handlers answer with a body in memory"
    headers = {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}
    return canonical_json(
        {"status": response.status, "headers": headers, "body": response.body.decode()}
    )


def _customer_id(response: web.Response) -> str | None:
    """The customer a kept answer holds (its `Location`), so anonymizing it deletes the answer."""
    location = response.headers.get("Location")
    return location.rstrip("/").rsplit("/", 1)[-1] if location else None


# Where a wrapped handler finds the id its claim chose for what it creates.
PLANNED_ID = web.RequestKey("idempotency_planned_id", str)
# Rebuild the answer of a request that stored `customer_id` but could not keep its answer.
Recover = Callable[[web.Request, str], Awaitable[web.Response | None]]


def idempotent(*, recover: Recover) -> Callable[[Handler], Handler]:
    """Honour `Idempotency-Key` on a handler (innermost decorator: the OpenAPI decorators
    above it annotate the wrapper). The handler stores what it creates under
    `request[PLANNED_ID]`; `recover` answers for a claim whose request stored it but never
    kept its answer (its process died, or the disk filled before `complete`), so a retry
    never hears "nothing stored" about a stored customer."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            key = _key(request)
            if key is None:
                return await handler(request)
            return await _idempotent_call(request, key, handler, recover)

        return wrapper

    return decorate


async def _recovered(
    request: web.Request, recover: Recover, customer_id: str, record: str, token: str
) -> web.Response | None:
    """The answer for what an earlier request under this key stored, kept now if it can be."""
    response = await recover(request, customer_id)
    if response is None:
        return None
    await _complete(request, record, token, response, request.app[wall_clock_key]())
    response.headers[REPLAYED_HEADER] = "true"
    return response


async def _complete(
    request: web.Request, record: str, token: str, response: web.Response, now: datetime
) -> None:
    """Keep the answer; when the database refuses (disk full), the answer still goes out:
    what was stored is stored, and the claim still names it for a retry."""
    sealed = request.app[pii_codec_key].seal(_kept(response), _PURPOSE)
    store = request.app[repository_key].idempotency
    try:
        await store.complete(record, token, sealed, now, _customer_id(response))
    except ServiceUnavailable:
        log.warning("an idempotent answer could not be kept; a retry rebuilds it")


async def _idempotent_call(
    request: web.Request, key: str, handler: Handler, recover: Recover
) -> web.StreamResponse:
    codec = request.app[pii_codec_key]
    clock = request.app[wall_clock_key]
    store = request.app[repository_key].idempotency
    record = record_id(_caller(request), key)
    fingerprint = codec.fingerprint(canonical_json(request[request_data_key]))
    claim = await store.claim(record, fingerprint, clock())
    if claim.state is ClaimState.TOO_MANY:
        raise IdempotencyKeysExhausted(
            f"This caller holds {MAX_LIVE_KEYS} live {HEADER} records; reuse a key for its "
            "retries, or send this request without one.",
            headers={"Retry-After": "3600"},
        )
    if claim.state is ClaimState.MISMATCH:
        raise IdempotencyKeyReused(
            f"This {HEADER} was used with a different request body; use a new key."
        )
    if claim.state is ClaimState.IN_FLIGHT:
        if claim.token and (
            recovered := await _recovered(request, recover, claim.customer_id, record, claim.token)
        ):
            return recovered
        raise IdempotencyInFlight(
            f"A request with this {HEADER} is still running; retry shortly.",
            headers={"Retry-After": "1"},
        )
    if claim.state is ClaimState.COMPLETED:
        try:
            return _replay(codec.open(claim.response, _PURPOSE))
        except PiiKeyError:
            log.warning("a kept idempotent answer names a retired PII key")
            raise IdempotencyKeyExpired(
                f"The first answer to this {HEADER} can no longer be replayed; "
                "send the request again with a new key."
            ) from None
    if claim.previous and (
        recovered := await _recovered(request, recover, claim.previous, record, claim.token)
    ):
        return recovered
    request[PLANNED_ID] = claim.customer_id
    try:
        try:
            response = await handler(request)
        except Exception as exc:
            response = error_response(request, exc)
    except BaseException:  # cancelled, or a redirect: nothing to keep
        await store.release(record, claim.token)
        raise
    if not isinstance(response, web.Response) or response.status >= 500:
        # A 5xx after the insert committed (rare: a render error) must not say "nothing
        # stored": if the planned customer exists, answer it.
        try:
            recovered = await recover(request, claim.customer_id)
        except ServiceUnavailable:  # cannot tell whether it was stored: keep the claim
            return response
        if recovered is None:
            await store.release(record, claim.token)
            return response
        response = recovered
    await _complete(request, record, claim.token, response, clock())
    return response
