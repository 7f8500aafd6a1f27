"""Customer storage: one repository contract (`base.CustomerRepository`) and its adapters,
picked by the scheme of `storage.url` as SQLAlchemy picks a dialect."""

from __future__ import annotations

from service.storage.base import CustomerRepository


def open_repository(url: str, database: str) -> CustomerRepository:
    """The adapter for `url`: `sqlite:///…` (embedded), `mongodb://…`, `mongodb+srv://…`,
    `mongomock://` (in memory). Call `ensure_schema()` before use."""
    if url.startswith("sqlite:///"):
        from service.storage.sqlite import SqliteRepository

        return SqliteRepository.from_url(url)
    from service.storage.mongo import MongoRepository

    return MongoRepository.from_url(url, database)
