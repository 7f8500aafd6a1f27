"""Webhooks through the whole service: a receiver down while events are made, the service
restarted, and every subscribed event arrives signed; `events replay` re-sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from service.__main__ import main
from service.storage.base import now
from tests.conftest import ALL_SCOPES
from tests.events.receiver import Receiver, hmac_signature, new_secret
from tests.factories import customer_body as customer
from tests.fakes import free_port

SUBSCRIBED = ["customer.created", "customer.closed"]


@pytest.fixture
def webhook(tmp_path: Path) -> dict[str, Any]:
    """One endpoint on a port where nothing listens yet; its secret file (two secrets)."""
    (old, old_key), (new, new_key) = new_secret(), new_secret()
    secret_file = tmp_path / "crm-secrets"
    secret_file.write_text(f"{old}\n{new}\n")
    url = f"http://127.0.0.1:{free_port()}/hook"
    return {
        "config": {
            "events": {
                "webhooks": [
                    {
                        "url": url,
                        "name": "crm",
                        "secret_file": str(secret_file),
                        "types": SUBSCRIBED,
                    }
                ]
            }
        },
        "secrets": (old, new),
        "keys": (old_key, new_key),
        "url": url,
    }


@pytest.fixture
async def start_receiver() -> AsyncIterator[Callable[[str], Any]]:
    runners: list[web.AppRunner] = []

    async def start(url: str) -> Receiver:
        receiver = Receiver()
        runner = web.AppRunner(receiver.make_app())
        await runner.setup()
        port = int(url.split(":")[2].split("/")[0])
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return receiver

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_a_receiver_down_across_a_restart_gets_every_subscribed_event_signed(
    make_client: Any, webhook: dict[str, Any], start_receiver: Any
) -> None:
    scopes = (*ALL_SCOPES, "events:read")
    first = await make_client(webhook["config"], scopes=scopes)
    ids = []
    for i in range(4):
        response = await first.post("/api/v1/customers", json=customer(i))
        ids.append((await response.json())["id"])
    assert (await first.patch(f"/api/v1/customers/{ids[0]}", json={"number": "9"})).status == 200
    assert (await first.delete(f"/api/v1/customers/{ids[1]}")).status == 204
    feed = (await (await first.get("/api/v1/events")).json())["data"]
    await first.close()  # the receiver never answered: every delivery is still owed

    receiver = await start_receiver(webhook["url"])
    second = await make_client(webhook["config"], scopes=scopes)
    wanted = [e for e in feed if e["type"] in SUBSCRIBED]
    assert len(wanted) == 5 and len(feed) == 6
    await receiver.wait_for(len(wanted))
    by_id = {item.headers["webhook-id"]: item for item in receiver.received}
    assert sorted(by_id) == sorted(e["id"] for e in wanted)  # none unsubscribed
    for item in wanted:
        got = by_id[item["id"]]
        assert got.event == item
        for secret in webhook["secrets"]:
            assert Webhook(secret).verify(got.body, got.headers) == item
        stamp = got.headers["webhook-timestamp"]
        assert got.headers["webhook-signature"].split(" ") == [
            hmac_signature(key, item["id"], stamp, got.body) for key in webhook["keys"]
        ]
    async with asyncio.timeout(10):  # the relay's counts are refreshed every few seconds
        while (ready := await (await second.get("/health/ready")).json())["webhooks"]["crm"][
            "pending"
        ]:
            await asyncio.sleep(0.2)
    assert ready["webhooks"]["crm"] == {"pending": 0, "dead_letters": 0, "lag_s": 0.0}
    metrics = await (await second.get("/metrics")).text()
    assert 'webhook_deliveries_total{endpoint="crm",outcome="delivered"} 5.0' in metrics
    assert 'webhook_dead_letters{endpoint="crm"} 0.0' in metrics


async def test_events_replay_re_sends_to_one_endpoint(
    make_client: Any,
    make_settings: Any,
    webhook: dict[str, Any],
    start_receiver: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    receiver = await start_receiver(webhook["url"])
    client = await make_client(webhook["config"])
    assert (await client.post("/api/v1/customers", json=customer(0))).status == 201
    await receiver.wait_for(1)
    settings = make_settings(webhook["config"])
    config = tmp_path / "replay.yaml"
    import yaml

    config.write_text(
        yaml.safe_dump(
            {
                "storage": {"url": settings.storage.url},
                "pii": {"key_file": settings.pii.key_file},
                **webhook["config"],
            }
        )
    )
    since = (now() - timedelta(minutes=5)).isoformat()
    replay = ["events", "--config", str(config), "replay", "--since", since, "--endpoint"]
    assert await asyncio.to_thread(main, [*replay, "crm"]) == 0
    assert "1 event(s) owed again to crm" in capsys.readouterr().out
    await receiver.wait_for(2)
    assert receiver.ids()[0] == receiver.ids()[1]
    assert await asyncio.to_thread(main, [*replay, "nope"]) == 2
    assert "no such webhook" in capsys.readouterr().err
