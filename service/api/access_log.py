"""One access-log line per request: method, route template, status, latency, request id,
and the token's subject when the request carried a valid token (null otherwise).

The route template (`/api/v1/customers/{customer_id}`), never the path or the query string:
`?email=` and `?cpf=` carry personal data, and a path is whatever the client typed (`%0A`,
`%1B`, a CPF where an id should be). Requests that matched no route log `-`.
"""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from service.api.protocol import REQUEST_ID_HEADER
from service.api.routing import route_template
from service.auth.principal import Principal
from service.logs import access_lines
from service.typedefs import authentication_key


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        fast = access_lines(self.logger)
        if fast is not None:
            request_id = response.headers.get(REQUEST_ID_HEADER, "-")
            fast.add(
                request.method,
                route_template(request) or "-",
                response.status,
                round(time * 1000, 1),
                request_id,
                request_id != request.headers.get(REQUEST_ID_HEADER),
                _subject(request),
            )
            return
        shown = {
            "method": request.method,
            "route": route_template(request) or "-",
            "status": response.status,
            "latency_ms": round(time * 1000, 1),
        }
        fields = {
            **shown,
            "request_id": response.headers.get(REQUEST_ID_HEADER, "-"),
            "subject": _subject(request),
        }
        # Only what the server chose is in the message; the client's request id and the
        # token's subject are fields (masked by the formatter, like every field).
        self.logger.info("%(method)s %(route)s %(status)s %(latency_ms)sms", shown, extra=fields)


def _subject(request: BaseRequest) -> str | None:
    """The subject of a token the request was authenticated with (even if then denied)."""
    outcome = request.get(authentication_key)
    return outcome.subject if isinstance(outcome, Principal) else None
