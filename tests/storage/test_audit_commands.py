"""`python -m service db audit verify|export`, through the CLI entry point."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from service.__main__ import main
from service.storage import open_repository
from service.storage.journal import journal_rows
from service.storage.pii import PiiCodec
from service.storage.sqlite_schema import sqlite_path
from tests.factories import change
from tests.storage.conftest import customer


@pytest.fixture
async def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: PiiCodec) -> str:
    """A SQLite file whose trail has creates by `api`, reads by `partner`; configured."""
    url = f"sqlite:///{tmp_path / 'customers.db'}"
    monkeypatch.setenv("CUSTOMERS__STORAGE__URL", url)
    monkeypatch.setenv("CUSTOMERS_PII_KEYS", codec.keyring.to_json())
    repository = open_repository(url, "customers", codec)
    await repository.ensure_schema()
    maria = await repository.insert(customer(), change("create", "api"))
    joao = await repository.insert(customer("joao@example.com", "11144477735"), change("create"))
    for who, fields in ((maria, ("cpf",)), (joao, ("phone",)), (maria, ("phone",))):
        read = journal_rows(change("read", "partner", fields), who["id"]).audit
        await repository.audit.append([read])
    await repository.close()
    return url


def tamper(url: str, statement: str) -> None:
    """What someone with the file, not the code, can do: drop the guard and edit."""
    with sqlite3.connect(sqlite_path(url), isolation_level=None) as connection:
        connection.execute("DROP TRIGGER audit_no_update")
        connection.execute("DROP TRIGGER audit_no_delete")
        connection.execute(statement)


def test_verify_counts_an_intact_chain(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "audit", "verify"]) == 0
    with sqlite3.connect(sqlite_path(url)) as connection:
        (head,) = connection.execute("SELECT hash FROM audit WHERE seq = 5").fetchone()
    assert f"5 entries checked, head {head}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("statement", "bad_seq"),
    [
        ("UPDATE audit SET actor = 'nobody' WHERE seq = 3", 3),
        ("UPDATE audit SET fields = '[]' WHERE seq = 4", 4),
        ("UPDATE audit SET at = '2020-01-01T00:00:00.000Z' WHERE seq = 1", 1),
        ("DELETE FROM audit WHERE seq = 2", 3),  # a gap: the next one no longer links
        ("DELETE FROM audit WHERE seq = 1", 2),
    ],
)
def test_verify_names_the_first_entry_changed_behind_its_back(
    url: str, capsys: pytest.CaptureFixture[str], statement: str, bad_seq: int
) -> None:
    with sqlite3.connect(sqlite_path(url)) as connection:
        (bad_id,) = connection.execute("SELECT id FROM audit WHERE seq = ?", (bad_seq,)).fetchone()
    tamper(url, statement)
    assert main(["db", "audit", "verify"]) == 1
    assert f"entry {bad_id}" in capsys.readouterr().err


def test_a_recomputed_hash_still_breaks_the_next_link(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rewriting one entry and its own hash does not help: the next one names the old hash."""
    import hashlib

    from service.audit.chain import canonical

    with sqlite3.connect(sqlite_path(url)) as connection:
        row = connection.execute("SELECT * FROM audit WHERE seq = 2").fetchone()
        names = [d[0] for d in connection.execute("SELECT * FROM audit").description]
        (next_id,) = connection.execute("SELECT id FROM audit WHERE seq = 3").fetchone()
    entry: dict[str, Any] = dict(zip(names, row, strict=True))
    entry["fields"] = json.loads(entry["fields"])
    entry["actor"] = "someone-else"
    forged = hashlib.sha256(canonical(entry)).hexdigest()
    tamper(url, f"UPDATE audit SET actor = 'someone-else', hash = '{forged}' WHERE seq = 2")
    assert main(["db", "audit", "verify"]) == 1
    assert f"entry {next_id}" in capsys.readouterr().err


def test_the_audit_table_refuses_updates_and_deletes(url: str) -> None:
    with sqlite3.connect(sqlite_path(url)) as connection:
        for statement in ("UPDATE audit SET actor = 'x'", "DELETE FROM audit"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                connection.execute(statement)


def test_incident_report_lists_each_customer_an_actor_saw(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "incident.jsonl"
    assert main(["db", "audit", "export", "--actor", "partner", str(report)]) == 0
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(line["fields"], line["entries"]) for line in lines] == [
        (["cpf", "phone"], 2),
        (["phone"], 1),
    ]
    assert all(line["actions"] == ["read"] for line in lines)
    assert "2 customers seen by partner" in capsys.readouterr().err
    assert (
        main(["db", "audit", "export", "--actor", "partner", str(report)]) == 1
    )  # never overwrites
    assert main(["db", "audit", "export", "--actor", "partner", "--since", "2999-01-01"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["db", "audit", "export", "--actor", "partner", "--since", "2000-01-01"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    with pytest.raises(SystemExit):
        main(["db", "audit", "export", "--actor", "partner", "--since", "yesterday"])
