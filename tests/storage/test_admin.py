"""`python -m service db backup|check|export|import`, through the CLI entry point."""

import asyncio
import io
import json
import sqlite3
from typing import Any

import pytest

from service.__main__ import main
from service.importer import import_lines
from service.settings import load_settings
from service.storage import open_repository
from service.storage.admin import export
from service.storage.sqlite_schema import sqlite_path
from service.validation.pipeline import ValidatorPipeline, load_validators
from tests.factories import change
from tests.storage.conftest import customer


@pytest.fixture
async def url(tmp_path, monkeypatch, codec):
    """A SQLite file with two customers, configured as storage.url; the keys in the env."""
    url = f"sqlite:///{tmp_path / 'customers.db'}"
    monkeypatch.setenv("CUSTOMERS__STORAGE__URL", url)
    monkeypatch.setenv("CUSTOMERS_PII_KEYS", codec.keyring.to_json())
    repository = open_repository(url, "customers", codec)
    await repository.ensure_schema()
    await repository.insert(customer(), change("create"))
    await repository.insert(customer("joao@example.com", "11144477735"), change("create"))
    await repository.close()
    return url


def rows(path):
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT * FROM customers ORDER BY id").fetchall()


def test_backup_is_a_consistent_copy(url, tmp_path, capsys):
    target = tmp_path / "backup.db"
    assert main(["db", "backup", str(target)]) == 0
    assert rows(target) == rows(sqlite_path(url)) and len(rows(target)) == 2
    assert main(["db", "backup", str(target)]) == 1  # never overwrites
    assert "exists" in capsys.readouterr().err


def test_backup_refuses_mongodb(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CUSTOMERS__STORAGE__URL", "mongodb://127.0.0.1:1")
    assert main(["db", "backup", str(tmp_path / "b.db")]) == 1
    assert "mongodump" in capsys.readouterr().err


def test_check_says_ok_or_what_is_wrong(url, capsys):
    assert main(["db", "check"]) == 0
    assert capsys.readouterr().out.strip().endswith(": ok")
    with sqlite3.connect(sqlite_path(url), isolation_level=None) as connection:
        connection.execute("DROP INDEX customers_email_key_unique")
    # `check` starts like the server would (ensure_schema), which does not re-create an
    # index of an already-migrated version: the damage stays visible.
    assert main(["db", "check"]) == 1
    captured = capsys.readouterr()
    assert "missing unique index customers_email_key_unique" in captured.err
    assert "NOT OK" in captured.out


def test_export_then_import_into_a_new_file_is_idempotent(url, tmp_path, monkeypatch, capsys):
    exported = tmp_path / "customers.jsonl"
    assert main(["db", "export", str(exported)]) == 0
    lines = exported.read_text().splitlines()
    assert [json.loads(line)["email"] for line in lines] == [
        "maria@example.com",
        "joao@example.com",
    ]
    assert "52998224725" not in exported.read_text()  # sealed: `cpf_sealed`, no `cpf`
    assert all("cpf" not in json.loads(line) for line in lines)
    monkeypatch.setenv("CUSTOMERS__STORAGE__URL", f"sqlite:///{tmp_path / 'moved.db'}")
    assert main(["db", "import", str(exported)]) == 0
    assert "read 2 customers, stored 2, already there 0, refused 0" in capsys.readouterr().out
    assert main(["db", "import", str(exported)]) == 0  # a re-run stores nothing twice
    assert "read 2 customers, stored 0, already there 2, refused 0" in capsys.readouterr().out

    def without_ciphertext(path):  # sealed again on import: same CPF, fresh nonce
        return [row[:2] + row[3:] for row in rows(path)]

    assert without_ciphertext(tmp_path / "moved.db") == without_ciphertext(sqlite_path(url))


def test_import_names_the_line_that_is_not_a_customer(url, tmp_path, capsys):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "0123456789abcdef01234567"}\nnot json\n')
    assert main(["db", "import", str(broken)]) == 1
    error = capsys.readouterr().err
    assert "line 1: missing" in error and "line 2: not JSON" in error
    line = json.dumps({**customer(), "id": "XYZ", "created_at": "", "updated_at": ""})
    broken.write_text(line + "\n")
    assert main(["db", "import", str(broken)]) == 1
    assert "line 1: the id is not 24 lower-case hex" in capsys.readouterr().err


async def test_export_from_sqlite_imports_into_mongo(url, codec):
    source = open_repository(url, "customers", codec)
    await source.ensure_schema()
    target = open_repository("mongomock://", "customers", codec)
    await target.ensure_schema()
    buffer = io.StringIO()
    assert await export(source, buffer, codec) == 2
    pipeline = ValidatorPipeline(load_validators(load_settings().validators))
    first = await import_lines(target, buffer.getvalue().splitlines(), codec, pipeline)
    assert (first.read, first.stored, first.already, first.refused) == (2, 2, 0, 0)
    again = await import_lines(target, buffer.getvalue().splitlines(), codec, pipeline)
    assert (again.read, again.stored, again.already, again.refused) == (2, 0, 2, 0)
    moved = (await target.page(limit=10)).items
    assert moved == (await source.page(limit=10)).items
    await source.close()
    await target.close()


# --- finding #10 of the third review: personal-data files were 0644, export overwrote ---


def _mode(path) -> int:
    import os
    import stat

    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o000])
async def test_the_database_and_its_wal_and_shm_are_0600_whatever_the_umask(tmp_path, codec, umask):
    import os

    old = os.umask(umask)
    try:
        path = tmp_path / f"fresh-{umask:o}.db"
        repository = open_repository(f"sqlite:///{path}", "customers", codec)
        await repository.ensure_schema()
        await repository.insert(customer(), change("create"))
        files = [path, *(p for p in (tmp_path / f"{path.name}-wal", tmp_path / f"{path.name}-shm"))]
        assert all(p.exists() for p in files)  # WAL mode, a connection open: both exist
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
        await repository.close()
    finally:
        os.umask(old)


async def test_a_database_made_world_readable_before_is_made_0600_on_open(tmp_path, codec):
    path = tmp_path / "old.db"
    repository = open_repository(f"sqlite:///{path}", "customers", codec)
    await repository.ensure_schema()
    await repository.close()
    path.chmod(0o644)
    repository = open_repository(f"sqlite:///{path}", "customers", codec)
    await repository.ensure_schema()
    assert _mode(path) == 0o600
    await repository.close()


@pytest.mark.parametrize("umask", [0o022, 0o000])
@pytest.mark.parametrize(
    "command",
    [["db", "backup"], ["db", "export"], ["db", "export", "--decrypt"]],
    ids=["backup", "export", "export-decrypt"],
)
def test_backups_and_exports_are_created_0600(url, tmp_path, command, umask):
    import os

    target = tmp_path / "out"
    old = os.umask(umask)
    try:
        assert main([*command, str(target)]) == 0
    finally:
        os.umask(old)
    assert _mode(target) == 0o600
    assert target.stat().st_size > 0


@pytest.mark.parametrize("decrypt", [[], ["--decrypt"]], ids=["sealed", "clear"])
def test_export_refuses_to_overwrite_without_force(url, tmp_path, capsys, decrypt):
    target = tmp_path / "customers.jsonl"
    target.write_text("keep me\n")
    target.chmod(0o644)
    assert main(["db", "export", *decrypt, str(target)]) == 1
    error = capsys.readouterr().err
    assert "exists" in error and "--force" in error
    assert target.read_text() == "keep me\n"
    assert main(["db", "export", *decrypt, "--force", str(target)]) == 0
    assert len(target.read_text().splitlines()) == 2 and _mode(target) == 0o600


def test_export_force_does_not_follow_a_symlink(url, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(victim)
    assert main(["db", "export", "--force", str(link)]) == 1
    assert victim.read_text() == "precious\n"


def test_export_and_import_keep_the_lifecycle(url, tmp_path, monkeypatch, codec):
    """Statuses and their timestamps travel; an anonymized customer exports with nothing to
    seal and imports still erased."""
    from service.customers import lifecycle

    async def end_both() -> dict[str, Any]:
        repository = open_repository(url, "customers", codec)
        await repository.ensure_schema()
        maria, joao = (await repository.page(limit=2)).items
        await repository.transition(maria["id"], lifecycle.CLOSE, change("close"), closed_days=3)
        await repository.transition(
            joao["id"], lifecycle.ANONYMIZE, change("anonymize"), closed_days=3
        )
        return await everyone(repository)

    async def everyone(repository: Any) -> dict[str, Any]:
        try:
            return {c["id"]: c for c in (await repository.page(limit=5)).items}
        finally:
            await repository.close()

    async def moved() -> dict[str, Any]:
        repository = open_repository(f"sqlite:///{tmp_path / 'moved.db'}", "customers", codec)
        await repository.ensure_schema()
        return await everyone(repository)

    before = asyncio.run(end_both())
    exported = tmp_path / "customers.jsonl"
    assert main(["db", "export", str(exported)]) == 0
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert {line["status"] for line in lines} == {"closed", "anonymized"}
    assert sorted(line.get("cpf_sealed") is None for line in lines) == [False, True]
    monkeypatch.setenv("CUSTOMERS__STORAGE__URL", f"sqlite:///{tmp_path / 'moved.db'}")
    assert main(["db", "import", str(exported)]) == 0
    assert asyncio.run(moved()) == before


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": "deleted"}, "status must be one of"),
        ({"status": "anonymized"}, "an anonymized customer holds personal data"),
    ],
)
def test_import_refuses_a_line_with_an_impossible_lifecycle(
    url, tmp_path, capsys, changes, message
):
    line = {
        **customer(),
        "id": "0123456789abcdef01234567",
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
        "closed_at": "2026-01-01T00:00:00+00:00",
        "purge_after": "2026-01-01T00:00:00+00:00",
        **changes,
    }
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(line) + "\n")
    assert main(["db", "import", str(broken)]) == 1
    assert f"line 1: {message}" in capsys.readouterr().err
