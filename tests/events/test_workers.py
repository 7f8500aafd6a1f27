"""`serve --workers 2` with a webhook: two processes run the relay on one SQLite file, and
the lease makes each event arrive once, not twice."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from service.auth.local_issuer import issue_local_token
from service.settings import load_settings
from tests.events.receiver import Receiver
from tests.factories import make_cpf
from tests.fakes import free_port


@pytest.fixture
async def receiver(aiohttp_server: Any) -> AsyncIterator[tuple[Receiver, str]]:
    fake = Receiver()
    server = await aiohttp_server(fake.make_app())
    yield fake, str(server.make_url("/hook"))


async def test_two_workers_deliver_every_event_once(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    fake, url = receiver
    (tmp_path / "secret").write_text("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    config = tmp_path / "server.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"port": free_port(), "workers": 2},
                "storage": {"url": f"sqlite:///{tmp_path / 'customers.db'}"},
                "pii": {"key_file": str(tmp_path / "pii-key")},
                "auth": {"local_issuer": {"key_file": str(tmp_path / "issuer-key.pem")}},
                "cep": {"providers": ["offline"]},
                "events": {
                    "webhooks": [
                        {
                            "url": url,
                            "name": "crm",
                            "secret_file": str(tmp_path / "secret"),
                            "types": ["customer.created"],
                        }
                    ]
                },
            }
        )
    )
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "service", "serve", "--config", str(config)),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        banner = await asyncio.wait_for(process.stdout.readline(), 60)
        assert b"customers-api on" in banner, banner
        settings = load_settings([config], environ={})
        token = issue_local_token(settings, "ops", ["customers:write"], [], 600)
        base = f"http://127.0.0.1:{settings.server.port}"
        created = []
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            for n in range(40):
                body = {
                    "name": f"Cliente {n}",
                    "email": f"c{n}@example.com",
                    "phone": "(11) 91234-5678",
                    "cep": "01001000",
                    "cpf": make_cpf(100_000_000 + n),
                }
                async with http.post(f"{base}/api/v1/customers", json=body) as response:
                    assert response.status == 201
                    created.append((await response.json())["id"])
        await fake.wait_for(40, timeout_s=30)
        await asyncio.sleep(2)  # time for a second process to send anything twice
        customers = [item.event["customer_id"] for item in fake.received]
        assert sorted(customers) == sorted(created)  # each once
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
