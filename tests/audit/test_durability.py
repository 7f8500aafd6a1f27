"""The trail as an operator's server keeps it (`python -m service serve` in a subprocess,
SQLite): a kill -9 in a burst of writes leaves every stored change with its entry and no
entry without its change; SIGTERM writes every buffered read before the process exits."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.auth.local_issuer import issue_local_token
from service.settings import Settings, load_settings
from tests.factories import make_cpf
from tests.fakes import PRACA_DA_SE, FakeViaCep, serve, write_server_config

WRITERS = 12


@pytest.fixture
async def viacep(aiohttp_server: Any) -> FakeViaCep:
    fake = FakeViaCep({"01001000": PRACA_DA_SE})
    await serve(aiohttp_server, fake)
    return fake


@pytest.fixture
def config(tmp_path: Path, viacep: FakeViaCep) -> Path:
    return write_server_config(tmp_path, viacep)


@pytest.fixture
async def server(config: Path, tmp_path: Path) -> AsyncIterator[tuple[Any, Settings]]:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "service", "serve", "--config", str(config)),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    banner = await asyncio.wait_for(process.stdout.readline(), 60)
    assert b"customers-api on" in banner, banner
    yield process, load_settings([config], environ={})
    if process.returncode is None:
        process.kill()
        await process.wait()


def headers(settings: Settings, sub: str) -> dict[str, str]:
    scopes = ["customers:read", "customers:write", "customers:pii"]
    return {"Authorization": f"Bearer {issue_local_token(settings, sub, scopes, [], 600)}"}


def rows(settings: Settings, query: str) -> list[Any]:
    path = settings.storage.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        return connection.execute(query).fetchall()


async def test_kill_9_in_a_burst_of_writes_leaves_no_change_without_its_entry(
    server: tuple[Any, Settings], config: Path, tmp_path: Path
) -> None:
    """Each writer registers customers and renames each one N1, N2, ... in turn, so a
    customer's stored name says how many updates were committed: exactly as many update
    entries must name it, and every stored customer has its create entry."""
    process, settings = server
    base = f"http://127.0.0.1:{settings.server.port}"
    acknowledged: list[str] = []

    async def writer(session: aiohttp.ClientSession, number: int) -> None:
        auth = headers(settings, f"writer-{number}")
        for n in range(10_000):
            body = {
                "name": "N0",
                "email": f"w{number}-{n}@example.com",
                "phone": "(11) 91234-5678",
                "cep": "01001000",
                "cpf": make_cpf(100_000_000 + number * 10_000 + n),
            }
            async with session.post(f"{base}/api/v1/customers", json=body, headers=auth) as answer:
                assert answer.status == 201, await answer.text()
                customer_id = (await answer.json())["id"]
            acknowledged.append(customer_id)
            for k in range(1, 3):
                url = f"{base}/api/v1/customers/{customer_id}"
                async with session.patch(url, json={"name": f"N{k}"}, headers=auth) as answer:
                    assert answer.status == 200

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(writer(session, i)) for i in range(WRITERS)]
        while len(acknowledged) < 150:
            await asyncio.sleep(0.01)
            assert not any(task.done() for task in tasks), [t.exception() for t in tasks]
        process.send_signal(signal.SIGKILL)
        await asyncio.gather(*tasks, return_exceptions=True)
    assert await process.wait() == -signal.SIGKILL

    names = dict(rows(settings, "SELECT id, json_extract(data, '$.name') FROM customers"))
    entries = rows(settings, "SELECT action, customer_id FROM audit")
    created = {customer for action, customer in entries if action == "create"}
    updates = Counter(customer for action, customer in entries if action == "update")
    assert set(acknowledged) <= set(names)  # acknowledged writes survived
    assert created == set(names)  # every stored customer has its create entry, and only they
    assert {c: int(name[1:]) for c, name in names.items() if name != "N0"} == dict(updates)
    verify = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "service", "db", "--config", str(config), "audit", "verify"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await verify.communicate()
    assert verify.returncode == 0
    assert f"{len(entries)} entries checked" in out.decode()


async def test_sigterm_writes_every_buffered_read(server: tuple[Any, Settings]) -> None:
    process, settings = server
    base = f"http://127.0.0.1:{settings.server.port}"
    body = {
        "name": "Maria",
        "email": "maria@example.com",
        "phone": "(11) 91234-5678",
        "cep": "01001000",
        "cpf": "52998224725",
    }
    async with aiohttp.ClientSession() as session:
        auth = headers(settings, "reader")
        async with session.post(f"{base}/api/v1/customers", json=body, headers=auth) as answer:
            customer_id = (await answer.json())["id"]
        url = f"{base}/api/v1/customers/{customer_id}"
        statuses = await asyncio.gather(
            *(session.get(url, headers=auth) for _ in range(40)), return_exceptions=False
        )
        assert {response.status for response in statuses} == {200}
        process.send_signal(signal.SIGTERM)
    assert await process.wait() == 0
    reads = rows(settings, "SELECT count(*) FROM audit WHERE action = 'read' AND actor = 'reader'")
    assert reads == [(40,)]
