"""JSON bodies out: one helper every handler answers with."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from typing import Any

from aiohttp import web

# UTF-8 as it is ("Praça da Sé"), not \u escapes: the body is declared UTF-8 anyway.
_dumps = partial(json.dumps, ensure_ascii=False)


def json_response(
    body: Mapping[str, Any], *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)
