"""Customer storage: one repository contract (`base.CustomerRepository`) and its adapters,
picked by the scheme of `storage.url` as SQLAlchemy picks a dialect."""

from __future__ import annotations

from service.errors import ServiceUnavailable
from service.settings import Settings
from service.storage.base import CustomerRepository, redact_url
from service.storage.pii import PiiCodec, check_key_ids, key_source, load_codec
from service.storage_url import known_prefixes, scheme_of


def open_repository(url: str, database: str, codec: PiiCodec) -> CustomerRepository:
    """The adapter for `url` by its scheme (`service.storage_url.SCHEMES`); CPFs sealed by
    `codec`. Call `ensure_schema()` before use."""
    scheme = scheme_of(url)
    if scheme is None:
        raise ValueError(f"storage.url must start with {known_prefixes()}")
    if scheme.adapter == "sqlite":
        from service.storage.sqlite import SqliteRepository

        return SqliteRepository.from_url(url, codec)
    from service.storage.mongo import MongoRepository

    return MongoRepository.from_url(url, database, codec)


async def open_storage(settings: Settings) -> tuple[CustomerRepository, PiiCodec]:
    """The configured repository, its schema ensured, and the codec it seals CPFs with.

    Raises SettingsError when stored CPFs name a key the configuration does not have (the
    server and every command refuse to run), ServiceUnavailable when no database answers.
    """
    codec = load_codec(settings)
    repository = open_repository(settings.storage.url, settings.storage.database, codec)
    try:
        try:
            await repository.ensure_schema()
        except ServiceUnavailable:
            where = redact_url(settings.storage.url)
            raise ServiceUnavailable(f"storage.url: no database answers at {where}") from None
        check_key_ids(await repository.pii_key_ids(), codec, key_source(settings)[0])
    except BaseException:
        await repository.close()
        raise
    return repository, codec
