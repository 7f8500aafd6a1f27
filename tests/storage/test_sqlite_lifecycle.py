"""What only the SQLite adapter promises about the lifecycle: erased values leave the file,
a row is never half anonymized, older files migrate, a killed purge loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from service.customers import lifecycle
from service.customers.model import Customer, now
from service.storage import open_repository
from service.storage.base import CustomerRepository, new_id
from service.storage.pii import Keyring, PiiCodec
from service.storage.sqlite_schema import SCHEMA_VERSION, migrate, sqlite_path
from tests.factories import change
from tests.storage.conftest import customer

ROOT = Path(__file__).resolve().parents[2]
CODEC = PiiCodec(Keyring.generate())
# Values found nowhere else in a fresh file.
DISTINCT = {
    "name": "Zéfiro Quintanilha Brandão",
    "email": "zefiro.quintanilha@example.net",
    "phone": "+5511987650123",
    "cpf": "11144477735",
}
DISTINCT_ADDRESS = {
    "cep": "04538133",
    "street": "Rua Xiquexique Azul",
    "neighborhood": "Vila Ômega Remota",
    "number": "4321-B",
    "complement": "bloco Quasar 9",
}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'customers.db'}"


async def opened(url: str) -> Any:
    repository = open_repository(url, "customers", CODEC)
    await repository.ensure_schema()
    return repository


def file_bytes(url: str) -> bytes:
    path = sqlite_path(url)
    return b"".join(f.read_bytes() for f in sorted(path.parent.glob(f"{path.name}*")))


async def test_nothing_anonymization_erased_stays_in_the_file(url: str) -> None:
    repository = await opened(url)
    record = {**customer(), **DISTINCT, "address": {**customer()["address"], **DISTINCT_ADDRESS}}
    stored = await repository.insert(record, change())
    for name in ("Zéfiro Q. Brandão", DISTINCT["name"]):  # older versions of the row
        await repository.update(stored["id"], {"name": name}, change("update"))
    store = repository.idempotency
    claim = await store.claim("answer-1", "fp", now())
    await store.complete("answer-1", claim.token, "SEALED-ANSWER-7f3a", now(), stored["id"])
    with sqlite3.connect(sqlite_path(url)) as connection:
        sealed = connection.execute(
            "SELECT cpf_ciphertext, cpf_index FROM customers WHERE id = ?", (stored["id"],)
        ).fetchone()
    secrets = [
        *(v.encode() for v in DISTINCT.values()),
        *(v.encode() for v in DISTINCT_ADDRESS.values()),
        b"Q. Brand",
        b"SEALED-ANSWER-7f3a",
        *(v.encode() for v in sealed),
    ]
    assert all(secret in file_bytes(url) for secret in secrets[-3:])  # the test can fail
    gone = await repository.transition(
        stored["id"], lifecycle.ANONYMIZE, change("anonymize"), closed_days=10
    )
    assert gone is not None and gone["status"] == "anonymized"
    await repository.close()
    dump = file_bytes(url)
    for secret in secrets:
        assert secret not in dump, secret
    assert "São Paulo".encode() in dump  # what it keeps is still there


async def test_a_half_anonymized_row_is_refused_by_the_file(url: str) -> None:
    repository = await opened(url)
    stored = await repository.insert(customer(), change())
    await repository.close()
    with sqlite3.connect(sqlite_path(url)) as connection:
        for statement in (
            "UPDATE customers SET status = 'anonymized' WHERE id = ?",
            "UPDATE customers SET email_key = NULL WHERE id = ?",
            "UPDATE customers SET cpf_index = NULL WHERE id = ?",
            "UPDATE customers SET status = 'closed' WHERE id = ?",  # no purge_after
            "UPDATE customers SET status = 'gone' WHERE id = ?",
        ):
            with pytest.raises(sqlite3.IntegrityError):
                connection.execute(statement, (stored["id"],))
    repository = await opened(url)
    gone = await repository.transition(
        stored["id"], lifecycle.ANONYMIZE, change("anonymize"), closed_days=10
    )
    await repository.close()
    with sqlite3.connect(sqlite_path(url)) as connection:
        with pytest.raises(sqlite3.IntegrityError):  # a name put back on an erased row
            connection.execute(
                "UPDATE customers SET data = json_set(data, '$.name', 'X') WHERE id = ?",
                (gone["id"],),
            )
        with pytest.raises(sqlite3.IntegrityError):
            connection.execute("UPDATE customers SET status = 'active' WHERE id = ?", (gone["id"],))


async def test_a_file_before_the_lifecycle_is_migrated(url: str) -> None:
    path = sqlite_path(url)
    path.parent.mkdir(parents=True)
    old = await opened(url)  # written at the current version, then rolled back by hand
    stored = await old.insert(customer(), change())
    await old.close()
    before = 5  # the audit trail: the version before the lifecycle (6)
    fresh = path.with_name("old.db")
    with sqlite3.connect(fresh, isolation_level=None) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        migrate(connection, CODEC, target=before)
        with sqlite3.connect(path) as source:
            row = source.execute(
                "SELECT id, email_key, cpf_ciphertext, cpf_key_id, cpf_index, data FROM customers"
            ).fetchone()
        connection.execute("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)", row)
        assert connection.execute("PRAGMA user_version").fetchone() == (before,)
    migrated_url = f"sqlite:///{fresh}"
    repository = await opened(migrated_url)
    read = await repository.get(stored["id"])
    assert read is not None and read["status"] == "active" and read["cpf"] == stored["cpf"]
    assert await repository.check() == []
    assert (await repository.page(limit=5, statuses=["active"])).items == [read]
    closed = await repository.transition(
        stored["id"], lifecycle.CLOSE, change("close"), closed_days=1
    )
    assert closed is not None and closed["status"] == "closed"
    await repository.close()
    with sqlite3.connect(fresh) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_a_page_of_active_customers_is_served_by_the_status_index(tmp_path: Path) -> None:
    """The query plan, not a timing: (status, id) in id order, no sort, no scan."""
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    asyncio.run(_close(opened(url)))
    with sqlite3.connect(sqlite_path(url)) as connection:
        plan = " ".join(
            row[-1]
            for row in connection.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM customers"
                " WHERE status = ? AND id > ? ORDER BY id LIMIT 21",
                ("active", "0" * 24),
            )
        )
    assert "customers_status_id" in plan and "TEMP B-TREE" not in plan, plan


async def _close(repository: Any) -> None:
    await (await repository).close()


# --- kill -9 during a purge of 10,000 closed customers ---

PURGED = 10_000


async def _closed_customers(url: str) -> list[str]:
    repository: CustomerRepository = await opened(url)
    past = now() - timedelta(days=1)
    ids = []
    for start in range(0, PURGED, 1000):
        batch = [
            {
                **customer(f"p{i}@example.com", f"{i:011d}"),
                "id": new_id(),
                "created_at": past,
                "updated_at": past,
                "status": "closed",
                "closed_at": past,
                "purge_after": past,
            }
            for i in range(start, start + 1000)
        ]
        await repository.restore(cast(list[Customer], batch), change("create", "operator"))
        ids += [c["id"] for c in batch]
    await repository.close()
    return ids


async def _purge_cli(url: str, tmp_path: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "CUSTOMERS__STORAGE__URL": url,
        "CUSTOMERS_PII_KEYS": CODEC.keyring.to_json(),
    }
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "service", "db", "purge", "--batch", "250"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _statuses(url: str) -> dict[str, int]:
    with sqlite3.connect(sqlite_path(url)) as connection:
        return dict(connection.execute("SELECT status, count(*) FROM customers GROUP BY status"))


async def test_kill_9_during_a_purge_loses_nothing_and_the_rerun_finishes(
    url: str, tmp_path: Path
) -> None:
    ids = await _closed_customers(url)
    process = await _purge_cli(url, tmp_path)
    assert process.stderr is not None
    reported = 0
    while reported < 2000:  # let a few batches commit, then kill it mid-run
        line = (await process.stderr.readline()).decode()
        assert line.startswith("anonymized "), line
        reported = int(line.split()[1])
    process.send_signal(signal.SIGKILL)
    assert await process.wait() == -signal.SIGKILL
    counts = _statuses(url)
    assert sum(counts.values()) == PURGED  # nothing lost
    assert reported <= counts["anonymized"] < PURGED  # every reported batch is durable
    repository = await opened(url)
    for customer_id in ids[:: PURGED // 200]:  # each row wholly one or the other
        read = await repository.get(customer_id)
        assert read is not None
        if read["status"] == "anonymized":
            assert read["email"] is read["cpf"] is read["name"] is None
        else:
            assert read["status"] == "closed" and read["cpf"] and read["email"]
    assert await repository.check() == []
    await repository.close()

    rerun = await _purge_cli(url, tmp_path)
    out, _ = await rerun.communicate()
    assert rerun.returncode == 0
    left = PURGED - counts["anonymized"]
    assert (
        out.decode().strip()
        == f"anonymized {left} closed customers whose retention period had ended"
    )
    assert _statuses(url) == {"anonymized": PURGED}
    with sqlite3.connect(sqlite_path(url)) as connection:
        (entries,) = connection.execute(
            "SELECT count(*) FROM audit WHERE action = 'anonymize' AND actor = 'operator'"
        ).fetchone()
    assert entries == PURGED  # one entry per anonymization, none lost, none twice


async def test_a_busy_file_does_not_fail_a_committed_anonymization(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A reader holding a snapshot keeps the WAL busy past the timeout: the anonymization is
    committed and answered; the WAL is emptied by a later checkpoint."""
    import service.storage.sqlite_schema as schema

    repository = await opened(url)
    stored = await repository.insert(customer(), change())
    reader = sqlite3.connect(sqlite_path(url), timeout=0.1)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM customers").fetchone()  # holds a read snapshot
    timeout, schema.BUSY_TIMEOUT_S = schema.BUSY_TIMEOUT_S, 0.2
    try:
        gone = await repository.transition(
            stored["id"], lifecycle.ANONYMIZE, change("anonymize"), closed_days=1
        )
    finally:
        schema.BUSY_TIMEOUT_S = timeout
        reader.rollback()
        reader.close()
    assert gone is not None and gone["status"] == "anonymized"
    assert "WAL checkpoint after an anonymization did not run" in caplog.text
    assert (await repository.get(stored["id"])) == gone
    await repository.close()
