"""Access log lines without query strings: `?email=` and `?cpf=` carry personal data."""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.1fms',
            request.remote,
            request.method,
            request.path,  # the path only; customer ids in it are opaque
            response.status,
            time * 1000,
        )
