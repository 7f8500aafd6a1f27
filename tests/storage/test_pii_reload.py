"""Finding #5 of the third review: after `pii new-key` + `pii rotate`, a server started
before answered 500 for every rotated customer and every page until restarted. Now a
server re-reads its key document on a key id it lacks (at most every
KEY_RELOAD_COOLDOWN_S), and `pii rotate` waits until the document is that old."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from service.__main__ import main
from service.storage import pii
from service.storage.pii import Keyring, PiiCodec, PiiKeyError
from tests.fakes import FakeClock


async def test_a_running_server_serves_customers_rotated_under_a_new_key(
    make_client: Any, make_settings: Any, monkeypatch: Any, tmp_path: Any, capsys: Any
) -> None:
    settings = make_settings()
    client = await make_client()
    from tests.factories import customer_body as customer

    ids = []
    for i in range(3):
        response = await client.post("/api/v1/customers", json=customer(i))
        assert response.status == 201
        ids.append((await response.json())["id"])
    if not settings.storage.url.startswith("sqlite"):
        pytest.skip("the CLI rotates the configured SQLite file")
    monkeypatch.setenv("CUSTOMERS__STORAGE__URL", settings.storage.url)
    monkeypatch.setenv("CUSTOMERS__PII__KEY_FILE", str(settings.path(settings.pii.key_file)))
    monkeypatch.setenv("CUSTOMERS__AUTH__LOCAL_ISSUER__KEY_FILE", str(tmp_path / "issuer"))
    assert await asyncio.to_thread(main, ["pii", "new-key"]) == 0
    key_file = settings.path(settings.pii.key_file)
    then = time.time() - pii.KEY_RELOAD_COOLDOWN_S - 1
    os.utime(key_file, (then, then))
    assert await asyncio.to_thread(main, ["pii", "rotate"]) == 0
    # the server's last read of the key document is older than the cooldown
    monkeypatch.setattr(pii, "KEY_RELOAD_COOLDOWN_S", 0.0)
    for customer_id in ids:
        response = await client.get(f"/api/v1/customers/{customer_id}")
        assert response.status == 200, await response.text()
        assert len((await response.json())["cpf"]) == 11
    page = await client.get("/api/v1/customers")
    assert page.status == 200 and len((await page.json())["data"]) == 3
    # and what it seals now is under the new key
    created = await client.post("/api/v1/customers", json=customer(5))
    assert created.status == 201
    active = Keyring.from_json(key_file.read_text(), "test").active
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["pii", "status"]) == 0
    assert f"key ids in use: {active}\n" in capsys.readouterr().out


def _ring() -> Keyring:
    return Keyring.generate()


def test_an_unknown_key_id_re_reads_the_document_at_most_once_per_cooldown() -> None:
    old = _ring()
    new = old.with_new_key()
    reads: list[int] = []
    document = [old]

    def reload() -> Keyring:
        reads.append(1)
        return document[0]

    clock = FakeClock()
    server = PiiCodec(old, reload=reload, clock=clock)
    rotated = PiiCodec(new).seal(b"data", "p")
    clock.advance(pii.KEY_RELOAD_COOLDOWN_S)
    with pytest.raises(PiiKeyError):  # the document does not have it yet
        server.open(rotated, "p")
    assert len(reads) == 1
    document[0] = new  # now it does, but the cooldown holds
    for _ in range(50):
        with pytest.raises(PiiKeyError):
            server.open(rotated, "p")
    assert len(reads) == 1  # a flood of unknown key ids is not a flood of reads
    clock.advance(pii.KEY_RELOAD_COOLDOWN_S)
    assert server.open(rotated, "p") == b"data"
    assert len(reads) == 2 and server.active_key_id == new.active


def test_a_document_with_another_index_key_is_not_taken() -> None:
    old = _ring()
    clock = FakeClock()
    foreign = Keyring.generate()
    server = PiiCodec(old, reload=lambda: foreign, clock=clock)
    clock.advance(pii.KEY_RELOAD_COOLDOWN_S)
    with pytest.raises(PiiKeyError):
        server.open(PiiCodec(foreign).seal(b"x", "p"), "p")
    assert server.keyring == old  # the blind index would stop matching every stored CPF


def test_rotate_refuses_while_servers_may_not_know_the_key_and_env_keys_need_a_restart(
    tmp_path: Any, monkeypatch: Any, capsys: Any
) -> None:
    monkeypatch.setenv("CUSTOMERS__STORAGE__URL", f"sqlite:///{tmp_path / 'c.db'}")
    monkeypatch.setenv("CUSTOMERS__PII__KEY_FILE", str(tmp_path / "pii-key"))
    assert main(["pii", "status"]) == 0  # creates the key file
    assert main(["pii", "new-key"]) == 0
    capsys.readouterr()
    assert main(["pii", "rotate"]) == 1
    assert "run `pii rotate` again in" in capsys.readouterr().err
    monkeypatch.setenv("CUSTOMERS_PII_KEYS", (tmp_path / "pii-key").read_text())
    assert main(["pii", "rotate"]) == 1
    assert "--servers-restarted" in capsys.readouterr().err
    assert main(["pii", "rotate", "--servers-restarted"]) == 0
