"""The server process as an operator runs it: `python -m service serve` in a subprocess,
stopped by signals, with a fake ViaCEP on 127.0.0.1 that holds lookups as long as a test
needs requests to stay in flight."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
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
from tests.fakes import PRACA_DA_SE, FakeViaCep, serve, write_server_config

# Distinct CEPs, so concurrent registrations make one provider call each (no coalescing).
CEPS = ("01001000", "01002000", "01003000", "01004000")


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
    # viacep only: a held lookup must hold the request, not fall back to the directory
    return write_server_config(tmp_path, viacep, timeout_s=30)


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
        # A connection still queued when the listener closes is reset by the kernel (while
        # it connects, or just after): not served, but not the refusal this waits for
        # either, so try again.
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except ConnectionRefusedError:
            return True
        except ConnectionResetError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(ConnectionResetError):
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


# --- workers: one port, several processes ---


def _socket_inodes(port: int) -> dict[str, set[int]]:
    """Inodes of the TCP sockets on local `port`, by state: LISTEN and ESTABLISHED."""
    states = {"0A": "listen", "01": "established"}
    found: dict[str, set[int]] = {"listen": set(), "established": set()}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] in states:
                    found[states[fields[3]]].add(int(fields[9]))
    return found


def _inodes_of(pid: int) -> set[int]:
    """Inodes of the sockets process `pid` holds."""
    found = set()
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    found.add(int(target[8:-1]))
    return found


def _sockets_of(pid: int, inodes: set[int]) -> int:
    return len(_inodes_of(pid) & inodes)


def workers_of(server: Server) -> list[int]:
    pid = server.process.pid
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return [int(child) for child in children.read().split()]


def listening(server: Server) -> dict[int, int]:
    """Worker pid -> listening sockets it holds on the server's port."""
    inodes = _socket_inodes(server.settings.server.port)["listen"]
    return {pid: _sockets_of(pid, inodes) for pid in workers_of(server)}


def serving(server: Server) -> dict[int, int]:
    """Worker pid -> connections it holds open with clients."""
    inodes = _socket_inodes(server.settings.server.port)["established"]
    return {pid: _sockets_of(pid, inodes) for pid in workers_of(server)}


def new_connections() -> aiohttp.ClientSession:
    """A session that opens a connection per request, so the kernel spreads them."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0))


async def test_two_workers_share_the_port_and_sigterm_drains_both(
    start: Any, viacep: FakeViaCep
) -> None:
    many = [f"0200{n:04d}" for n in range(12)]
    viacep.addresses.update({cep: PRACA_DA_SE for cep in many})
    server = await start("--workers", "2")
    assert "2 workers" in server.banner
    assert sorted(listening(server).values()) == [1, 1]  # two processes, one socket each
    viacep.slow = True
    bodies = [customer(10 + n, cep) for n, cep in enumerate(many)]
    async with new_connections() as session:
        posts = await post_all(session, server, bodies)
        await until(lambda: viacep.calls >= len(bodies))
        held = serving(server)
        assert len(held) == 2 and all(held.values()), held  # both workers hold requests
        assert sum(held.values()) == len(bodies)
        workers = workers_of(server)
        server.signal(signal.SIGTERM)
        assert await refused(server.base)
        assert not any(post.done() for post in posts)
        viacep.release()
        answers = await asyncio.gather(*posts)
    assert [status for status, _ in answers] == [201] * len(bodies)
    assert await server.wait() == 0
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)
    assert await stored_emails(server.settings) == sorted(body["email"] for body in bodies)


async def test_workers_answer_hold_unique_indexes_and_a_killed_one_is_replaced(
    start: Any,
) -> None:
    server = await start("--workers", "2")
    url, port = f"{server.base}/api/v1/customers", server.settings.server.port
    async with new_connections() as session:

        async def get_live() -> int:
            async with session.get(f"{server.base}/health/live") as response:
                return response.status

        assert await asyncio.gather(*(get_live() for _ in range(200))) == [200] * 200

        async def post_same() -> tuple[int, Any]:
            async with session.post(url, json=customer(7), headers=server.headers) as response:
                return response.status, await response.json()

        answers = await asyncio.gather(*(post_same() for _ in range(16)))
        statuses = sorted(status for status, _ in answers)
        assert statuses == [201] + [422] * 15
        codes = {e["code"] for status, body in answers if status == 422 for e in body["errors"]}
        assert codes == {"already_exists"}
        assert len(await stored_emails(server.settings)) == 1

        before = workers_of(server)
        doomed = _inodes_of(before[0]) & _socket_inodes(port)["listen"]
        os.kill(before[0], signal.SIGKILL)
        # Connections already queued at the killed worker's socket are reset with it (SO_REUSEPORT
        # gives each worker its own queue); once the kernel has closed that socket, the
        # survivor answers every one while the supervisor replaces the dead worker.
        await until(lambda: not doomed & _socket_inodes(port)["listen"])
        assert await asyncio.gather(*(get_live() for _ in range(50))) == [200] * 50
        await until(lambda: len(listening(server)) == 2 and all(listening(server).values()))
        after = workers_of(server)
        assert before[1] in after and before[0] not in after
        assert await asyncio.gather(*(get_live() for _ in range(50))) == [200] * 50
    server.signal(signal.SIGTERM)
    assert await server.wait() == 0
    assert server.process.stderr is not None
    errors = (await server.process.stderr.read()).decode()
    assert f"worker {before[0]} died" in errors and "Traceback" not in errors


@pytest.mark.parametrize("broken", ["validator", "policy"])
async def test_a_start_up_error_with_workers_is_reported_once(
    config: Path, tmp_path: Path, broken: str
) -> None:
    env = dict(os.environ)
    if broken == "validator":  # fails while building the app
        env["CUSTOMERS__VALIDATORS"] = "[{use: email}, {use: cpff}]"
        expected = "validators[1] (use: cpff)"
    else:  # fails inside a worker's start-up (the policy engine's cleanup_ctx)
        policies = tmp_path / "policies"
        shutil.copytree(Path(__file__).resolve().parents[1] / "policies", policies)
        rules = policies / "customers" / "authz" / "policy.rego"
        rules.write_text(rules.read_text() + "\nallow if {\n")
        env["CUSTOMERS__AUTHZ__POLICIES_DIR"] = str(policies)
        expected = str(rules)
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "service", "serve", "--config", str(config), "--workers", "2"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert out == b""  # no banner: it never served
    lines = err.decode().splitlines()  # a compiler's message may add lines under the first
    assert lines[0].startswith("error: ") and expected in lines[0], lines
    assert sum(line.startswith(f"error: {expected}") for line in lines) == 1, lines
    assert "Traceback" not in err.decode()


def test_memory_rate_limits_with_workers_are_named_as_per_worker() -> None:
    from service.runtime import per_worker_warnings

    def settings(workers: int, enabled: bool, url: str) -> Settings:
        return load_settings(
            environ={},
            overrides={
                "server": {"workers": workers},
                "ratelimit": {"enabled": enabled, "url": url},
            },
        )

    (warning,) = per_worker_warnings(settings(3, True, "memory://"))
    assert "3 x ratelimit.rate_per_s" in warning and "redis://" in warning
    assert per_worker_warnings(settings(1, True, "memory://")) == []
    assert per_worker_warnings(settings(3, False, "memory://")) == []
    assert per_worker_warnings(settings(3, True, "redis://127.0.0.1:6379/0")) == []


async def test_workers_drain_when_their_supervisor_is_killed(start: Any) -> None:
    server = await start("--workers", "2")
    workers = workers_of(server)
    server.process.kill()
    await server.wait()
    await until(lambda: not any(os.path.exists(f"/proc/{pid}/fd") for pid in workers), 15)
    assert await refused(server.base)


async def test_a_replacement_that_cannot_start_is_retried_until_it_can(
    start: Any, config: Path, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(Path(__file__).resolve().parents[1] / "policies", policies)
    rules = policies / "customers" / "authz" / "policy.rego"
    good = rules.read_text()
    values = yaml.safe_load(config.read_text())
    values["authz"] = {"policies_dir": str(policies)}
    config.write_text(yaml.safe_dump(values))
    server = await start("--workers", "2")
    rules.write_text(good + "\nallow if {\n")  # a worker starting now cannot load the policy
    first, second = workers_of(server)
    os.kill(first, signal.SIGKILL)
    await asyncio.sleep(3)  # replacements start, fail on the policy, and are tried again
    serving_now = {pid for pid, sockets in listening(server).items() if sockets}
    assert serving_now == {second}
    rules.write_text(good)
    await until(lambda: len(listening(server)) == 2 and all(listening(server).values()), 60)
    server.signal(signal.SIGTERM)
    assert await server.wait() == 0
    assert server.process.stderr is not None
    errors = (await server.process.stderr.read()).decode()
    assert errors.count(f"error: {rules}") >= 2  # tried more than once, backing off


async def test_a_drained_worker_writes_every_access_line(start: Any) -> None:
    """Access lines wait up to 50 ms for their batch; a worker leaves through `os._exit`
    (no atexit), so the drain writes what is still waiting."""
    server = await start("--workers", "2")
    async with new_connections() as session:
        for _ in range(30):
            async with session.get(f"{server.base}/health/live") as response:
                assert response.status == 200
    server.signal(signal.SIGTERM)
    assert await server.wait() == 0
    assert server.process.stderr is not None
    lines = (await server.process.stderr.read()).decode().splitlines()
    access = [json.loads(line) for line in lines if '"logger": "aiohttp.access"' in line]
    assert [line["route"] for line in access].count("/health/live") == 30
