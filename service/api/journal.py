"""What handlers hand to the audit trail: the `Change` of a write (who: the token's
subject; which request), and the customers a response showed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from service.api.protocol import REQUEST_ID_HEADER, request_id_of
from service.logs import redact
from service.storage.base import Change
from service.typedefs import decision_key, metrics_key, principal_key, read_recorder_key


def _request_id(request: web.Request) -> str:
    """The id the response echoes, with what could be personal data masked as in the logs
    (a client may choose its X-Request-ID: a CPF or an email would then be in the trail)."""
    known = request_id_of(request)
    # one the server made has no digits and no `@`: nothing in it to mask
    return redact(known) if known == request.headers.get(REQUEST_ID_HEADER) else known


def change_of(request: web.Request, action: str, fields: Iterable[str] = ()) -> Change:
    return Change.of(
        action,
        request[principal_key].subject,
        request_id=_request_id(request),
        fields=tuple(fields),
    )


def recorded(request: web.Request, change: Change) -> None:
    """Count the entry of a change the repository stored."""
    request.app[metrics_key].audit_entries.labels(change.action).inc()


def record_reads(request: web.Request, customers: Iterable[Mapping[str, Any]]) -> None:
    """One read entry per customer shown, when `audit.reads` says so (buffered)."""
    request.app[read_recorder_key].record(
        request[principal_key].subject,
        _request_id(request),
        (customer["id"] for customer in customers),
        request[decision_key].masked_fields,
    )
