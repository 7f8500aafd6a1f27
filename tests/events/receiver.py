"""A webhook receiver on 127.0.0.1 for the tests: records every request; answers as told."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


def new_secret() -> tuple[str, bytes]:
    """A Standard Webhooks secret (`whsec_` + base64) and the HMAC key it stands for."""
    key = secrets.token_bytes(32)
    return "whsec_" + base64.b64encode(key).decode(), key


def hmac_signature(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The signature computed here, independently of the `standardwebhooks` package."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """`status` answers every request; `hang` never answers (until the test ends)."""

    status: int = 200
    hang: bool = False
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        self.arrived.set()
        if self.hang:
            await asyncio.sleep(3600)
        return web.Response(status=self.status)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        return app

    def ids(self) -> list[str]:
        return [item.headers["webhook-id"] for item in self.received]

    async def wait_for(self, count: int, timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
