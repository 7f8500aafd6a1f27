"""What only the SQLite adapter promises: the file survives restarts, crashes and other
processes, and older files are migrated forward."""

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from service.customers.errors import DuplicateCustomer
from service.storage import open_repository
from service.storage.pii import Keyring, PiiCodec
from service.storage.sqlite_schema import SCHEMA_VERSION, migrate, sqlite_path
from tests.factories import change
from tests.storage.conftest import customer

BURST = Path(__file__).with_name("burst.py")
ROOT = Path(__file__).resolve().parents[2]
CODEC = PiiCodec(Keyring.generate())


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'data' / 'customers.db'}"


async def opened(url):
    repository = open_repository(url, "customers", CODEC)
    await repository.ensure_schema()
    return repository


async def test_the_folder_and_file_are_created_and_survive_a_restart(url):
    first = await opened(url)
    stored = await first.insert(customer(), change("create"))
    await first.close()
    assert sqlite_path(url).is_file()
    second = await opened(url)
    assert await second.get(stored["id"]) == stored
    with pytest.raises(DuplicateCustomer):
        await second.insert(customer(), change("create"))
    await second.close()


def test_relative_urls_are_relative_to_the_working_directory():
    assert sqlite_path("sqlite:///var/customers.db") == Path("var/customers.db")
    assert sqlite_path("sqlite:////srv/data/c.db") == Path("/srv/data/c.db")


async def test_the_file_is_in_wal_mode_at_the_current_schema_version(url):
    repository = await opened(url)
    await repository.close()
    with sqlite3.connect(sqlite_path(url)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


async def burst(url, count):
    return await asyncio.create_subprocess_exec(
        *(sys.executable, str(BURST), url, CODEC.keyring.to_json(), str(count)),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )


async def test_two_processes_on_one_file_keep_uniqueness(url):
    await (await opened(url)).close()  # schema first, so both processes start writing at once
    first, second = await burst(url, 60), await burst(url, 60)
    outputs = await asyncio.gather(first.communicate(), second.communicate())
    lines = [out.decode().split("\n")[:-1] for out, _ in outputs]
    assert first.returncode == second.returncode == 0
    for i in range(60):  # customer i clashes on email and CPF: exactly one process stored it
        assert sorted(line.split()[0] for line in (lines[0][i], lines[1][i])) == ["dup", "ok"]
    repository = await opened(url)
    assert len((await repository.page(limit=100)).items) == 60
    await repository.close()


async def test_a_process_killed_mid_burst_loses_no_acknowledged_write(url):
    await (await opened(url)).close()
    process = await burst(url, 100_000)
    acknowledged: list[str] = []
    while len(acknowledged) < 200:
        acknowledged.append((await process.stdout.readline()).decode().split()[1])
    process.send_signal(signal.SIGKILL)
    async for line in process.stdout:  # what it acknowledged before the signal landed
        if line.startswith(b"ok"):
            acknowledged.append(line.decode().split()[1])
    assert await process.wait() == -signal.SIGKILL
    repository = await opened(url)
    for customer_id in acknowledged:
        assert await repository.get(customer_id) is not None, customer_id
    assert await repository.check() == []
    await repository.close()


async def test_a_version_2_file_is_migrated(url):
    """Version 3 seals the CPFs a version-2 file holds in clear, and leaves no clear copy in
    the file or its WAL; later versions follow."""
    path = sqlite_path(url)
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path, isolation_level=None) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        migrate(connection, CODEC, target=2)
        connection.execute(
            "INSERT INTO customers VALUES (?, 'Old', 'old@example.com', 'old@example.com',"
            " '+5511912345678', '52998224725', '{}', ?, ?)",
            ("0123456789abcdef01234567", "2026-01-01T12:00:00+00:00", "2026-01-01T12:00:00+00:00"),
        )
    repository = await opened(url)
    assert (await repository.get("0123456789abcdef01234567"))["name"] == "Old"
    assert await repository.check() == []
    assert (await repository.get("0123456789abcdef01234567"))["cpf"] == "52998224725"
    with pytest.raises(DuplicateCustomer) as clash:  # the blind index is unique
        await repository.insert(customer(email="new@example.com"), change("create"))
    assert clash.value.fields == ("cpf",)
    await repository.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    for file in path.parent.iterdir():
        assert b"52998224725" not in file.read_bytes(), file.name


async def test_check_names_a_missing_index_and_a_wrong_version(url):
    await (await opened(url)).close()
    with sqlite3.connect(sqlite_path(url), isolation_level=None) as connection:
        connection.execute("DROP INDEX customers_cpf_index_unique")
        connection.execute("PRAGMA user_version = 1")
    repository = open_repository(url, "customers", CODEC)
    assert await repository.check() == [
        f"schema version 1, expected {SCHEMA_VERSION}",
        "missing unique index customers_cpf_index_unique",
    ]
    await repository.close()


async def test_a_version_3_row_moves_to_the_json_column_and_reads_with_new_fields(url):
    """Version 4 keeps the indexed columns and moves the rest to `data`; a row written
    before `street` or `resolved_at` existed reads with their defaults."""
    path = sqlite_path(url)
    path.parent.mkdir(parents=True)
    sealed = CODEC.encrypt_cpf("52998224725")
    with sqlite3.connect(path, isolation_level=None) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        migrate(connection, CODEC, target=3)
        connection.execute(
            "INSERT INTO customers VALUES (?, 'Old', 'Old@example.com', 'old@example.com',"
            " '+5511912345678', ?, ?, ?, ?, ?, ?)",
            (
                "0123456789abcdef01234567",
                sealed.ciphertext,
                sealed.key_id,
                sealed.index,
                '{"cep": "01001000", "city": "São Paulo"}',
                "2026-01-01T12:00:00+00:00",
                "2026-01-01T12:00:01+00:00",
            ),
        )
    repository = await opened(url)
    old = await repository.get("0123456789abcdef01234567")
    assert old is not None
    assert (old["name"], old["email"], old["cpf"]) == ("Old", "Old@example.com", "52998224725")
    assert old["address"]["city"] == "São Paulo"
    assert old["address"]["street"] is None and old["address"]["resolved_at"] is None
    assert old["updated_at"].isoformat() == "2026-01-01T12:00:01+00:00"
    assert await repository.exists("email", "OLD@example.com")  # the index column kept
    assert await repository.check() == []
    with pytest.raises(DuplicateCustomer):
        await repository.insert(customer(email="new@example.com"), change("create"))
    await repository.close()


def test_connections_keep_statement_journals_and_sorts_in_memory(tmp_path: Path) -> None:
    """A temporary file would hold page images of personal data (and cost 4x the writes of
    a batch of audit entries): every connection keeps them in memory."""
    from service.storage.sqlite_schema import connect

    connection = connect(tmp_path / "c.db")
    assert connection.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
