"""Fake external services for tests: small aiohttp apps served on 127.0.0.1.

Usage with pytest-aiohttp::

    fake = FakeViaCep()
    base_url = await serve(aiohttp_server, fake)   # "http://127.0.0.1:40123", also fake.base_url
    settings = load_settings(overrides={"cep": {"viacep": {"base_url": base_url}}})

Switches, flipped at any time: `down` (answer 500), `slow` (answer only after `release()`
or server shutdown, i.e. past any client timeout). `calls` counts requests, `user_agents`
records the User-Agent of each.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from service.cep.base import Address

# cep -> fields in this project's naming; each fake renders them in its own API's shape.
PRACA_DA_SE = {
    "street": "Praça da Sé",
    "neighborhood": "Sé",
    "city": "São Paulo",
    "state": "SP",
}
# A generic CEP: it covers a whole town, its address names no street or neighborhood.
GENERIC_CEP = "78455000"
LUCAS_DO_RIO_VERDE = {"street": "", "neighborhood": "", "city": "Lucas do Rio Verde", "state": "MT"}
DEFAULT_ADDRESSES: dict[str, dict[str, str]] = {
    "01001000": PRACA_DA_SE,
    GENERIC_CEP: LUCAS_DO_RIO_VERDE,
}
MISSING_CEP = "99999999"  # absent from every fake by default

_CEP_RE = re.compile(r"[0-9]{8}")


class _FakeCepService:
    route: str

    def __init__(self, addresses: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.addresses = {
            cep: dict(fields)
            for cep, fields in (DEFAULT_ADDRESSES if addresses is None else addresses).items()
        }
        self.base_url = ""  # set by serve()
        self.down = False
        self.slow = False
        self.calls = 0
        self.user_agents: list[str] = []
        self._released = asyncio.Event()

    def release(self) -> None:
        """Let the requests held by `slow` answer."""
        self._released.set()

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(self.route, self._handle)

        async def on_shutdown(_: web.Application) -> None:
            self.release()  # so held handlers end and the server stops promptly

        app.on_shutdown.append(on_shutdown)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        self.user_agents.append(request.headers.get("User-Agent", ""))
        if self.slow:
            await self._released.wait()
        if self.down:
            return web.json_response({"message": "internal error"}, status=500)
        return self.answer(request.match_info["cep"])

    def answer(self, cep: str) -> web.StreamResponse:
        raise NotImplementedError


class FakeViaCep(_FakeCepService):
    """ViaCEP: GET /ws/{cep}/json/; `{"erro": "true"}` (or `true`) for unknown, 400 malformed."""

    route = "/ws/{cep}/json/"

    def __init__(
        self,
        addresses: Mapping[str, Mapping[str, str]] | None = None,
        *,
        erro_as_bool: bool = False,
    ) -> None:
        super().__init__(addresses)
        self.erro_as_bool = erro_as_bool

    def answer(self, cep: str) -> web.StreamResponse:
        if not _CEP_RE.fullmatch(cep):
            return web.Response(status=400, text="<h1>Bad Request</h1>", content_type="text/html")
        fields = self.addresses.get(cep)
        if fields is None:
            return web.json_response({"erro": True if self.erro_as_bool else "true"})
        body: dict[str, Any] = {
            "cep": f"{cep[:5]}-{cep[5:]}",
            "logradouro": fields["street"],
            "complemento": "",
            "unidade": "",
            "bairro": fields["neighborhood"],
            "localidade": fields["city"],
            "uf": fields["state"],
            "ibge": "3550308",
            "gia": "1004",
            "ddd": "11",
            "siafi": "7107",
        }
        return web.json_response(body)


class FakeBrasilApi(_FakeCepService):
    """BrasilAPI: GET /api/cep/v1/{cep}; 404 for unknown."""

    route = "/api/cep/v1/{cep}"

    def answer(self, cep: str) -> web.StreamResponse:
        fields = self.addresses.get(cep)
        if fields is None:
            body = {"name": "CepPromiseError", "message": "CEP not found", "type": "not_found"}
            return web.json_response(body, status=404)
        return web.json_response({"cep": cep, **fields, "service": "fake"})


async def serve(
    aiohttp_server: Callable[[web.Application], Awaitable[Any]], fake: _FakeCepService
) -> str:
    """Start `fake` with pytest-aiohttp's `aiohttp_server`; sets and returns `fake.base_url`."""
    server = await aiohttp_server(fake.make_app())
    fake.base_url = str(server.make_url("/")).rstrip("/")
    return fake.base_url


class FakeClock:
    """The one fake clock: it moves only when told to. `clock()` is seconds (monotonic or
    epoch, as the code under test wants); `clock.wall()` the same moment as a UTC datetime."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wall(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


SE = Address("01001000", "Praça da Sé", "Sé", "São Paulo", "SP", "viacep")


@dataclass
class FakeCustomers:
    """The validators' view of the stored customers: which values are taken."""

    taken: dict[str, set[str]] = field(default_factory=dict)
    calls: list[tuple[str, str, str | None]] = field(default_factory=list)

    async def exists(self, field: str, value: str, *, exclude_id: str | None = None) -> bool:
        self.calls.append((field, value, exclude_id))
        return value in self.taken.get(field, set())


@dataclass
class FakeCep:
    """A CEP resolver answering from `known`; `asked` records each CEP looked up."""

    known: dict[str, Address] = field(default_factory=lambda: {"01001000": SE})
    asked: list[str] = field(default_factory=list)

    async def resolve(self, cep: str) -> Address | None:
        self.asked.append(cep)
        return self.known.get(cep)


def free_port() -> int:
    """A loopback TCP port nothing listens on (bound and released at once): for servers a
    test starts, and for addresses where no server must answer."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_server_config(folder: Path, viacep: FakeViaCep, **viacep_options: Any) -> Path:
    """`folder/server.yaml` for a `serve` subprocess: a free port, a SQLite file, key files
    and CEPs from `viacep` only (a held lookup holds its request), all under `folder`."""
    path = folder / "server.yaml"
    values = {
        "server": {"port": free_port(), "shutdown_timeout_s": 20},
        "storage": {"url": f"sqlite:///{folder / 'customers.db'}"},
        "pii": {"key_file": str(folder / "pii-key")},
        "auth": {"local_issuer": {"key_file": str(folder / "issuer-key.pem")}},
        "cep": {"providers": ["viacep"], "viacep": {"base_url": viacep.base_url, **viacep_options}},
    }
    path.write_text(yaml.safe_dump(values))
    return path
