"""`python -m service db restore BACKUP` (SQLite): checked before it replaces anything, the
replaced database kept, refused while another process has the file open."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from service.__main__ import main
from service.storage import open_repository
from service.storage.pii import Keyring, PiiCodec
from service.storage.sqlite_schema import sqlite_path
from tests.factories import change
from tests.storage.conftest import customer


@pytest.fixture
async def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: PiiCodec) -> str:
    """A SQLite file with two customers, configured as storage.url; the keys in the env."""
    url = f"sqlite:///{tmp_path / 'var' / 'customers.db'}"
    monkeypatch.setenv("CUSTOMERS__STORAGE__URL", url)
    monkeypatch.setenv("CUSTOMERS_PII_KEYS", codec.keyring.to_json())
    (tmp_path / "var").mkdir()
    repository = open_repository(url, "customers", codec)
    await repository.ensure_schema()
    await repository.insert(customer(), change("create"))
    await repository.insert(customer("joao@example.com", "11144477735"), change("create"))
    await repository.close()
    return url


async def emails(url: str, codec: PiiCodec) -> list[str]:
    repository = open_repository(url, "customers", codec)
    await repository.ensure_schema()
    try:
        return sorted(c["email"] for c in (await repository.page(limit=100)).items)
    finally:
        await repository.close()


async def add(url: str, codec: PiiCodec, record: dict[str, Any]) -> None:
    repository = open_repository(url, "customers", codec)
    await repository.ensure_schema()
    await repository.insert(record, change("create"))
    await repository.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_restore_brings_back_the_backup_and_keeps_what_it_replaced(
    url: str, tmp_path: Path, codec: PiiCodec, capsys: Any
) -> None:
    backup = tmp_path / "backup.db"
    assert main(["db", "backup", str(backup)]) == 0
    assert mode(backup) == 0o600  # it holds personal data
    asyncio.run(add(url, codec, customer("late@example.com", "39053344705")))
    capsys.readouterr()

    assert main(["db", "restore", str(backup)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"restored 2 customers from {backup}")
    assert asyncio.run(emails(url, codec)) == ["joao@example.com", "maria@example.com"]
    kept = next(sqlite_path(url).parent.glob("customers.db.before-restore-*"))
    assert str(kept) in out and mode(kept) == 0o600
    assert asyncio.run(emails(f"sqlite:///{kept}", codec)) == [
        "joao@example.com",
        "late@example.com",
        "maria@example.com",
    ]
    assert not list(sqlite_path(url).parent.glob(".customers.db.restore-*"))  # no staging left
    assert main(["db", "check"]) == 0


def test_restore_into_an_empty_place_needs_no_previous_file(
    url: str, tmp_path: Path, codec: PiiCodec, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    backup = tmp_path / "backup.db"
    assert main(["db", "backup", str(backup)]) == 0
    fresh = f"sqlite:///{tmp_path / 'elsewhere' / 'customers.db'}"
    monkeypatch.setenv("CUSTOMERS__STORAGE__URL", fresh)
    assert main(["db", "restore", str(backup)]) == 0
    assert "kept" not in capsys.readouterr().out
    assert asyncio.run(emails(fresh, codec)) == ["joao@example.com", "maria@example.com"]
    assert mode(sqlite_path(fresh)) == 0o600


def test_restore_refuses_while_another_process_has_the_database_open(
    url: str, tmp_path: Path, codec: PiiCodec, capsys: Any
) -> None:
    backup = tmp_path / "backup.db"
    assert main(["db", "backup", str(backup)]) == 0
    holder = sqlite3.connect(sqlite_path(url))  # what a running server holds
    holder.execute("SELECT count(*) FROM customers").fetchall()
    try:
        assert main(["db", "restore", str(backup)]) == 1
    finally:
        holder.close()
    assert "stop every server" in capsys.readouterr().err
    assert not list(sqlite_path(url).parent.glob("customers.db.before-restore-*"))


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100, b"SQLite format 3\0"])
def test_restore_refuses_what_is_not_a_customers_database_and_changes_nothing(
    url: str, tmp_path: Path, codec: PiiCodec, capsys: Any, content: bytes
) -> None:
    before = sqlite_path(url).read_bytes()
    bad = tmp_path / "bad.db"
    bad.write_bytes(content)
    assert main(["db", "restore", str(bad)]) == 1
    assert "error:" in capsys.readouterr().err
    assert sqlite_path(url).read_bytes() == before
    assert asyncio.run(emails(url, codec)) == ["joao@example.com", "maria@example.com"]


def test_restore_refuses_a_backup_sealed_with_keys_it_does_not_have(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    backup = tmp_path / "backup.db"
    assert main(["db", "backup", str(backup)]) == 0
    monkeypatch.setenv("CUSTOMERS_PII_KEYS", Keyring.generate().to_json())
    before = sqlite_path(url).read_bytes()
    assert main(["db", "restore", str(backup)]) == 2
    assert "error:" in capsys.readouterr().err
    assert sqlite_path(url).read_bytes() == before


def test_restore_refuses_mongodb_and_a_missing_file(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    assert main(["db", "restore", str(tmp_path / "nope.db")]) == 1
    assert "no backup file" in capsys.readouterr().err
    monkeypatch.setenv("CUSTOMERS__STORAGE__URL", "mongodb://127.0.0.1:1")
    assert main(["db", "restore", str(tmp_path / "nope.db")]) == 1
    assert "mongorestore" in capsys.readouterr().err
