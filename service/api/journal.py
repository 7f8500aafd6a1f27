"""The `Change` a handler hands to the repository: who (the token's subject), which request."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from service.api.protocol import request_id_of
from service.storage.base import Change
from service.typedefs import principal_key


def change_of(request: web.Request, action: str, fields: Iterable[str] = ()) -> Change:
    return Change.of(
        action,
        request[principal_key].subject,
        request_id=request_id_of(request),
        fields=tuple(fields),
    )
