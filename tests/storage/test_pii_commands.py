"""`python -m service pii status|new-key|rotate`, and refusing to start without a used key;
no CPF in clear in the SQLite file, its WAL, a backup or an export after all of it."""

import asyncio
import json
import stat

import pytest

from service.__main__ import main
from service.settings import load_settings
from service.storage import open_storage
from service.storage.pii import Keyring
from service.storage.sqlite_schema import sqlite_path
from tests.factories import change
from tests.storage.conftest import customer

CPFS = ["52998224725", "11144477735", "39053344705"]


@pytest.fixture
def configured(tmp_path, monkeypatch):
    """storage.url and pii.key_file in the env, as an operator's shell would have them."""
    monkeypatch.delenv("CUSTOMERS_PII_KEYS", raising=False)
    monkeypatch.setenv("CUSTOMERS__STORAGE__URL", f"sqlite:///{tmp_path / 'db' / 'c.db'}")
    monkeypatch.setenv("CUSTOMERS__PII__KEY_FILE", str(tmp_path / "keys" / "pii-key"))
    return tmp_path


def on_storage(work):
    """Run `work(repository)` on the configured storage, as the server would open it.
    (The commands run their own event loop, so these tests are synchronous.)"""

    async def run():
        repository, _ = await open_storage(load_settings())
        try:
            return await work(repository)
        finally:
            await repository.close()

    return asyncio.run(run())


def store(*customers):
    async def insert(repository):
        return [await repository.insert(c, change("create")) for c in customers]

    return on_storage(insert)


async def cpfs(repository):
    return [c["cpf"] for c in (await repository.page(limit=5)).items]


def keyring(tmp_path):
    return Keyring.from_json((tmp_path / "keys" / "pii-key").read_text(), "test")


def age_key_document(configured, seconds: float = 31) -> None:
    """As if the key document was written `seconds` ago: every server may have re-read it."""
    import os
    import time

    path = configured / "keys" / "pii-key"
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_new_key_then_rotate_leaves_every_cpf_under_the_newest_key(configured, capsys):
    maria, joao = store(customer(cpf=CPFS[0]), customer("joao@example.com", CPFS[1]))
    first = keyring(configured).active
    assert main(["pii", "new-key"]) == 0
    newest = keyring(configured).active
    assert newest != first and set(keyring(configured).keys) == {first, newest}
    assert stat.S_IMODE((configured / "keys" / "pii-key").stat().st_mode) == 0o600
    assert "Back this file up now" in capsys.readouterr().out
    assert main(["pii", "rotate", "--batch", "1"]) == 1  # servers may not know the key yet
    assert "re-read it at most every 30 s" in capsys.readouterr().err
    age_key_document(configured)
    assert main(["pii", "rotate", "--batch", "1"]) == 0
    assert f"re-sealed 2 CPFs with key {newest}" in capsys.readouterr().out
    assert main(["pii", "rotate"]) == 0  # resumable: nothing left to do
    assert "re-sealed 0 CPFs" in capsys.readouterr().out
    assert main(["pii", "status"]) == 0
    assert f"key ids in use: {newest}\n" in capsys.readouterr().out
    assert on_storage(cpfs) == CPFS[:2]

    async def by_cpf(repository):
        return (await repository.page(limit=5, filters={"cpf": CPFS[1]})).items

    assert on_storage(by_cpf) == [joao]
    assert maria["cpf"] == CPFS[0]


def test_start_is_refused_naming_the_key_id_the_configuration_lacks(configured, capsys):
    store(customer())
    used = keyring(configured).active
    (configured / "keys" / "pii-key").write_text(Keyring.generate().to_json())  # wrong file
    assert main(["serve", "--port", "0"]) == 2
    assert main(["pii", "status"]) == 2
    assert main(["db", "export"]) == 2
    err = capsys.readouterr().err
    assert err.count(f"encrypted with key id(s) {used}, which") == 3


def test_keys_from_the_env_var_new_key_prints_the_next_document(configured, monkeypatch, capsys):
    keys = Keyring.generate()
    monkeypatch.setenv("CUSTOMERS_PII_KEYS", keys.to_json())
    assert main(["pii", "new-key"]) == 0
    printed = Keyring.from_json(capsys.readouterr().out, "stdout")
    assert printed.index_key == keys.index_key and printed.active not in keys.keys
    assert not (configured / "keys").exists()


def test_no_cpf_in_clear_in_the_file_wal_backup_or_export(configured, capsys):
    maria, joao = store(customer(cpf=CPFS[0]), customer("joao@example.com", CPFS[1]))
    on_storage(lambda repository: repository.update(joao["id"], {"cpf": CPFS[2]}, change("update")))
    assert main(["pii", "new-key"]) == 0
    age_key_document(configured)
    assert main(["pii", "rotate"]) == 0
    assert main(["db", "backup", str(configured / "backup.db")]) == 0
    assert main(["db", "export", str(configured / "export.jsonl")]) == 0
    assert main(["db", "export", "--decrypt", str(configured / "clear.jsonl")]) == 0
    capsys.readouterr()
    database = sqlite_path(load_settings().storage.url)

    async def files_while_open(repository):  # the WAL exists while a connection is open
        await repository.update(maria["id"], {"name": "Maria S."}, change("update"))
        return {file.name: file.read_bytes() for file in database.parent.iterdir()}

    files = on_storage(files_while_open)
    assert {"c.db", "c.db-wal"} <= files.keys() and len(files["c.db-wal"]) > 0
    assert files.get("c.db-writer.lock", b"") == b""
    for name in ("backup.db", "export.jsonl"):
        files[name] = (configured / name).read_bytes()
    for name, data in files.items():
        # real content (the writer's lock file is empty: it is only flock'ed)...
        assert b"joao@example.com" in data or name.endswith(("-shm", "-writer.lock"))
        for cpf in CPFS:  # ...but no CPF, bare or formatted
            formatted = f"{cpf[:3]}.{cpf[3:6]}.{cpf[6:9]}-{cpf[9:]}"
            assert cpf.encode() not in data and formatted.encode() not in data, name
    clear = [json.loads(line) for line in (configured / "clear.jsonl").read_text().splitlines()]
    assert [c["cpf"] for c in clear] == [CPFS[0], CPFS[2]]
    # an export with sealed CPFs imports back (with the key document that sealed them)
    (configured / "db" / "c.db").unlink()
    for suffix in ("-wal", "-shm"):
        (configured / "db" / f"c.db{suffix}").unlink(missing_ok=True)
    assert main(["db", "import", str(configured / "export.jsonl")]) == 0
    assert on_storage(cpfs) == [CPFS[0], CPFS[2]]
    assert maria["id"] == clear[0]["id"]
