"""The SQLite file's schema: connections, transactions, and the migrations that bring an
older file forward (`PRAGMA user_version` counts the versions that have run).

Since version 5 a customer is one row of its indexed columns (id, the email key, the sealed
CPF and its blind index) and one JSON column, `data`, holding every other field of the
field table (`service.customers.model`): a new field needs no migration, and a row written
before it existed reads with the field's default.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from service.keyfiles import make_private_database
from service.storage.pii import PiiCodec

BUSY_TIMEOUT_S = 5.0
UNIQUE_INDEXES = ("customers_email_key_unique", "customers_cpf_index_unique")
# pages of one status; the retention sweep
LIFECYCLE_INDEXES = ("customers_status_id", "customers_purge_after")
_INDEXES = (
    "CREATE UNIQUE INDEX customers_email_key_unique ON customers (email_key)",
    "CREATE UNIQUE INDEX customers_cpf_index_unique ON customers (cpf_index)",
    # `pii_key_ids` walks this index (a lookup per key id), `reencrypt_pii` reads by it
    "CREATE INDEX customers_cpf_key_id ON customers (cpf_key_id)",
)


def _seal_cpfs(connection: sqlite3.Connection, codec: PiiCodec) -> None:
    """The CPF sealed (ciphertext, key id, blind index) instead of in clear. `secure_delete`
    zeroes the pages the clear table leaves behind, so no CPF stays in the file's free pages
    (`migrate` then empties the WAL)."""
    connection.execute("PRAGMA secure_delete = ON")
    connection.execute(
        """CREATE TABLE customers_v3 (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            email TEXT NOT NULL,
            email_key TEXT NOT NULL,
            phone TEXT NOT NULL,
            cpf_ciphertext TEXT NOT NULL,
            cpf_key_id TEXT NOT NULL,
            cpf_index TEXT NOT NULL,
            address TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) WITHOUT ROWID"""
    )
    old = "id, name, email, email_key, phone, cpf, address, created_at, updated_at"
    for row in connection.execute(f"SELECT {old} FROM customers").fetchall():
        sealed = codec.encrypt_cpf(row[5])
        connection.execute(
            "INSERT INTO customers_v3 (id, name, email, email_key, phone, cpf_ciphertext,"
            " cpf_key_id, cpf_index, address, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*row[:5], sealed.ciphertext, sealed.key_id, sealed.index, *row[6:]),
        )
    connection.execute("DROP TABLE customers")
    connection.execute("ALTER TABLE customers_v3 RENAME TO customers")
    for statement in _INDEXES:
        connection.execute(statement)


_CREATE_IDEMPOTENCY_KEYS = (
    """CREATE TABLE idempotency_keys (
        id TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        token TEXT,
        response TEXT,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at)",
)

_AUDIT_TRAIL = (
    # `seq` is the chain position; rows are never updated or deleted
    """CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        fields TEXT NOT NULL,
        request_id TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX audit_customer ON audit (customer_id, seq DESC)",
    "CREATE INDEX audit_actor ON audit (actor, seq DESC)",
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END",
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END",
)

_FIELDS_AS_JSON = (
    """CREATE TABLE customers_v4 (
        id TEXT PRIMARY KEY,
        email_key TEXT NOT NULL,
        cpf_ciphertext TEXT NOT NULL,
        cpf_key_id TEXT NOT NULL,
        cpf_index TEXT NOT NULL,
        data TEXT NOT NULL
    ) WITHOUT ROWID""",
    """INSERT INTO customers_v4
        SELECT id, email_key, cpf_ciphertext, cpf_key_id, cpf_index,
            json_object('name', name, 'email', email, 'phone', phone,
                'address', json(address), 'created_at', created_at, 'updated_at', updated_at)
        FROM customers""",
    "DROP TABLE customers",
    "ALTER TABLE customers_v4 RENAME TO customers",
    *_INDEXES,
)

_PERSONAL_IN_DATA = ("name", "email", "phone", "blocked_reason") + tuple(
    f"address.{name}" for name in ("cep", "street", "neighborhood", "number", "complement")
)
_LIFECYCLE = (
    """CREATE TABLE customers_v6 (
        id TEXT PRIMARY KEY,
        email_key TEXT,
        cpf_ciphertext TEXT,
        cpf_key_id TEXT,
        cpf_index TEXT,
        status TEXT NOT NULL DEFAULT 'active'
            CHECK (status IN ('active', 'blocked', 'closed', 'anonymized')),
        purge_after TEXT CHECK ((purge_after IS NULL) = (status IN ('active', 'blocked'))),
        data TEXT NOT NULL,
        -- an anonymized row holds no personal data, any other row its email and CPF: a row
        -- is never half anonymized, whatever is killed when
        CHECK ((status = 'anonymized') = (email_key IS NULL)),
        CHECK (email_key IS NULL
            OR (cpf_ciphertext IS NOT NULL AND cpf_key_id IS NOT NULL AND cpf_index IS NOT NULL)),
        CHECK (email_key IS NOT NULL
            OR (cpf_ciphertext IS NULL AND cpf_key_id IS NULL AND cpf_index IS NULL)),
        CHECK (status <> 'anonymized' OR ("""
    + " AND ".join(f"json_extract(data, '$.{name}') IS NULL" for name in _PERSONAL_IN_DATA)
    + """))
    ) WITHOUT ROWID""",
    """INSERT INTO customers_v6 (id, email_key, cpf_ciphertext, cpf_key_id, cpf_index, data)
        SELECT id, email_key, cpf_ciphertext, cpf_key_id, cpf_index, data FROM customers""",
    "DROP TABLE customers",
    "ALTER TABLE customers_v6 RENAME TO customers",
    *_INDEXES,
    # a page of one status (a reader who sees only `active`) walks this index in id order
    "CREATE INDEX customers_status_id ON customers (status, id)",
    # the retention sweep: closed customers by deadline
    "CREATE INDEX customers_purge_after ON customers (purge_after) WHERE status = 'closed'",
    # the Idempotency-Key answers naming a customer, deleted when it is anonymized
    "ALTER TABLE idempotency_keys ADD COLUMN customer_id TEXT",
    "CREATE INDEX idempotency_keys_customer_id ON idempotency_keys (customer_id)"
    " WHERE customer_id IS NOT NULL",
)

# the outbox (service/storage/sqlite_events.py): positions in commit order, deliveries
_EVENTS = (
    """CREATE TABLE events (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        fields TEXT NOT NULL,
        occurred_at TEXT NOT NULL
    )""",
    "CREATE INDEX events_occurred_at ON events (occurred_at)",
    # how far the retention sweep has deleted: a cursor before it has missed events
    "CREATE TABLE event_feed (id INTEGER PRIMARY KEY CHECK (id = 1), swept_through INTEGER)",
    "INSERT INTO event_feed VALUES (1, 0)",
    """CREATE TABLE webhook_cursors (
        endpoint TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE webhook_deliveries (
        endpoint TEXT NOT NULL,
        event_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        customer_id TEXT NOT NULL,
        body TEXT NOT NULL,
        occurred_at INTEGER NOT NULL,
        dead INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL,
        lease_owner TEXT,
        lease_until INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        PRIMARY KEY (endpoint, event_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint, dead, next_at)",
    "CREATE INDEX webhook_deliveries_customer"
    " ON webhook_deliveries (endpoint, customer_id, dead, position)",
)

# One entry per schema version: the steps that bring version N-1 to N (statements, or
# functions of the connection and the PII codec). Append only.
Step = str | Callable[[sqlite3.Connection, PiiCodec], None]
MIGRATIONS: tuple[tuple[Step, ...], ...] = (
    (  # 1: customers, unique email key
        """CREATE TABLE customers (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            email TEXT NOT NULL,
            email_key TEXT NOT NULL,
            phone TEXT NOT NULL,
            cpf TEXT NOT NULL,
            address TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE UNIQUE INDEX customers_email_key_unique ON customers (email_key)",
    ),
    ("CREATE UNIQUE INDEX customers_cpf_unique ON customers (cpf)",),  # 2: unique CPF
    (_seal_cpfs, *_CREATE_IDEMPOTENCY_KEYS),  # 3: two changes shipped as one version
    _AUDIT_TRAIL,  # 4: the audit trail
    _FIELDS_AS_JSON,  # 5: indexed columns + `data`
    # 6: statuses; the email key and sealed CPF nullable (an anonymized row has none, and
    # NULLs never clash in a unique index: its email and CPF are free again)
    _LIFECYCLE,
    _EVENTS,  # 7: events, the feed's sweep mark, webhook cursors and deliveries
)
SCHEMA_VERSION = len(MIGRATIONS)


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative/file.db` (to the working directory) or `sqlite:////abs/file.db`."""
    return Path(url.removeprefix("sqlite:///"))


def migrate(connection: sqlite3.Connection, codec: PiiCodec, target: int = SCHEMA_VERSION) -> None:
    """Bring the file forward to schema version `target`, in one transaction."""
    with transaction(connection):
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"schema version {version} is newer than this code knows")
        for steps in MIGRATIONS[version:target]:
            for step in steps:
                if callable(step):
                    step(connection, codec)
                else:
                    connection.execute(step)
        connection.execute(f"PRAGMA user_version = {max(version, target)}")
    if version < target:  # what the steps replaced may linger in the WAL: empty it
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


def writer_lock_path(path: Path) -> Path:
    """The empty file whose `flock` the servers' writer threads take turns on."""
    return path.with_name(path.name + "-writer.lock")


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the file's settings;
    the file (and so its -wal and -shm) is 0600: it holds personal data."""
    make_private_database(path)
    connection = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    # Before the first table only (a new file): freed pages can go back to the file system
    # (`incremental_vacuum` after a sweep); an older file keeps reusing its free pages.
    connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    # After a checkpoint the WAL is cut back to this size, not left at its largest.
    connection.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
    # Deleted or overwritten content is zeroed, not left in free space: what anonymization
    # erases is gone from the file once the WAL is checkpointed (`truncate_wal`).
    connection.execute("PRAGMA secure_delete = ON")
    # Statement journals (a multi-row INSERT in a batch's savepoint keeps one) and sorts in
    # memory, not in temporary files: a file would hold page images of personal data, and
    # writing it quadrupled what a batch of audit reads wrote (2.9 KB against 0.6 KB a row).
    connection.execute("PRAGMA temp_store = MEMORY")
    return connection


def truncate_wal(path: Path) -> None:
    """Copy the WAL into the file and empty it: older page images (the values an
    anonymization erased among them) live in the WAL until then."""
    connection = connect(path)
    try:
        (busy, _, _) = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        connection.close()
    if busy:
        raise sqlite3.OperationalError("a reader or writer kept the WAL busy")


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE`: take the write lock first, so a transaction never has to be
    retried half-way because another process wrote meanwhile.

    Inside a group-commit batch (already in a transaction) the work runs as it is: the
    batch gives it its own savepoint, undone if it raises."""
    if connection.in_transaction:
        yield
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def check_schema(connection: sqlite3.Connection) -> list[str]:
    """What is wrong with the file: integrity, schema version, missing unique indexes."""
    problems = [
        f"integrity_check: {message}"
        for (message,) in connection.execute("PRAGMA integrity_check").fetchall()
        if message != "ok"
    ]
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        problems.append(f"schema version {version}, expected {SCHEMA_VERSION}")
    indexes = {
        name
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'customers'"
        )
    }
    return (
        problems
        + [f"missing unique index {name}" for name in UNIQUE_INDEXES if name not in indexes]
        + [f"missing index {name}" for name in LIFECYCLE_INDEXES if name not in indexes]
    )
