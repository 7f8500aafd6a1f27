"""The server process as an operator runs it: `python -m service serve` in a subprocess,
stopped by signals, with a fake ViaCEP on 127.0.0.1 that holds lookups as long as a test
needs requests to stay in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from service.auth.local_issuer import issue_local_token
from service.settings import Settings, load_settings
from service.storage import open_storage
from tests.factories import make_cpf
from tests.fakes import PRACA_DA_SE, FakeViaCep, serve

# Distinct CEPs, so concurrent registrations make one provider call each (no coalescing).
CEPS = ("01001000", "01002000", "01003000", "01004000")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def customer(n: int, cep: str = CEPS[0]) -> dict[str, str]:
    return {
        "name": f"Cliente {n}",
        "email": f"cliente{n}@example.com",
        "phone": f"(11) 9{n:04d}-5678",
        "cep": cep,
        "cpf": make_cpf(100_000_000 + n),
    }


@dataclass
class Server:
    process: asyncio.subprocess.Process
    base: str
    settings: Settings
    headers: dict[str, str]
    banner: str = ""

    async def wait_banner(self) -> str:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        self.banner = line.decode()
        assert "customers-api on" in self.banner, self.banner
        return self.banner

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    async def wait(self, timeout: float = 60) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)


@pytest.fixture
async def viacep(aiohttp_server: Any) -> FakeViaCep:
    fake = FakeViaCep({cep: PRACA_DA_SE for cep in CEPS})
    await serve(aiohttp_server, fake)
    return fake


@pytest.fixture
def config(tmp_path: Path, viacep: FakeViaCep) -> Path:
    path = tmp_path / "server.yaml"
    values = {
        "server": {"port": free_port(), "shutdown_timeout_s": 20},
        "storage": {"url": f"sqlite:///{tmp_path / 'customers.db'}"},
        "pii": {"key_file": str(tmp_path / "pii-key")},
        "auth": {"local_issuer": {"key_file": str(tmp_path / "issuer-key.pem")}},
        # viacep only: a held lookup must hold the request, not fall back to the directory
        "cep": {"providers": ["viacep"], "viacep": {"base_url": viacep.base_url, "timeout_s": 30}},
    }
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture
async def start(config: Path, tmp_path: Path) -> AsyncIterator[Any]:
    started: list[Server] = []

    async def start_server(*args: str) -> Server:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "service", "serve", "--config", str(config), *args),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        settings = load_settings([config], environ={})
        scopes = ["customers:read", "customers:write", "customers:pii"]
        token = issue_local_token(settings, "ops", scopes, [], 600)
        server = Server(
            process,
            f"http://127.0.0.1:{settings.server.port}",
            settings,
            {"Authorization": f"Bearer {token}"},
        )
        started.append(server)
        await server.wait_banner()
        return server

    yield start_server
    for server in started:
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()


async def stored_emails(settings: Settings) -> list[str]:
    repository, _ = await open_storage(settings)
    try:
        page = await repository.page(limit=100)
    finally:
        await repository.close()
    return sorted(customer["email"] for customer in page.items)


async def refused(base: str) -> bool:
    """True once a new TCP connection to the server's port is refused."""
    host, port = base.removeprefix("http://").split(":")
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except ConnectionRefusedError:
            return True
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)
    return False


async def post_all(
    session: aiohttp.ClientSession, server: Server, bodies: Sequence[dict[str, str]]
) -> list[asyncio.Task[tuple[int, Any]]]:
    async def post(body: dict[str, str]) -> tuple[int, Any]:
        async with session.post(
            f"{server.base}/api/v1/customers", json=body, headers=server.headers
        ) as response:
            return response.status, await response.json()

    return [asyncio.create_task(post(body)) for body in bodies]


async def until(condition: Any, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_sigterm_lets_requests_in_flight_finish_and_refuses_new_connections(
    start: Any, viacep: FakeViaCep
) -> None:
    server = await start()
    viacep.slow = True
    bodies = [customer(n, CEPS[n]) for n in range(3)]
    async with aiohttp.ClientSession() as session:
        posts = await post_all(session, server, bodies)
        await until(lambda: viacep.calls >= 3)  # all three are inside their CEP lookup
        server.signal(signal.SIGTERM)
        assert await refused(server.base)  # stopped accepting...
        assert not any(post.done() for post in posts)  # ...while the three are still held
        viacep.release()
        answers = await asyncio.gather(*posts)
    assert [status for status, _ in answers] == [201, 201, 201]
    assert await server.wait() == 0
    assert server.process.stderr is not None
    assert b"Traceback" not in await server.process.stderr.read()
    assert await stored_emails(server.settings) == sorted(body["email"] for body in bodies)


async def test_a_second_signal_exits_at_once(start: Any, viacep: FakeViaCep) -> None:
    server = await start()
    viacep.slow = True  # never released: a drain would wait shutdown_timeout_s (20 s)
    async with aiohttp.ClientSession() as session:
        posts = await post_all(session, server, [customer(1, CEPS[1])])
        await until(lambda: viacep.calls >= 1)
        server.signal(signal.SIGTERM)
        assert await refused(server.base)
        server.signal(signal.SIGINT)
        assert await server.wait(timeout=5) == 1
        with pytest.raises(aiohttp.ClientError):
            await posts[0]
    assert await stored_emails(server.settings) == []


async def test_a_drain_cancels_what_outlasts_shutdown_timeout(
    start: Any, viacep: FakeViaCep, config: Path
) -> None:
    values = yaml.safe_load(config.read_text())
    values["server"]["shutdown_timeout_s"] = 0.5
    config.write_text(yaml.safe_dump(values))
    server = await start()
    viacep.slow = True  # never released
    async with aiohttp.ClientSession() as session:
        posts = await post_all(session, server, [customer(2, CEPS[2])])
        await until(lambda: viacep.calls >= 1)
        server.signal(signal.SIGTERM)
        assert await server.wait(timeout=15) == 0
        with pytest.raises(aiohttp.ClientError):
            await posts[0]
    assert await stored_emails(server.settings) == []  # cancelled before it stored anything


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_port_in_use_is_one_line_and_exit_2(config: Path, tmp_path: Path, workers: str):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "service", "serve", "--config", str(config)),
            *("--port", port, "--workers", workers),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert out == b""
    assert err.decode().splitlines() == [
        f"error: server: cannot listen on 127.0.0.1:{port}: the port is already in use"
    ]


def test_workers_setting_accepts_auto_and_counts(tmp_path: Path) -> None:
    assert load_settings(environ={"CUSTOMERS__SERVER__WORKERS": "3"}).server.workers == 3
    cores = len(os.sched_getaffinity(0))
    assert load_settings(environ={"CUSTOMERS__SERVER__WORKERS": "auto"}).server.workers == cores
    for bad in ("0", "many", "1.5", "true"):
        with pytest.raises(Exception, match="server.workers"):
            load_settings(environ={"CUSTOMERS__SERVER__WORKERS": bad})
