"""One scheme table: the settings check, the opener and the CLI agree on every URL."""

from __future__ import annotations

import pytest

from service.settings import SettingsError, load_settings
from service.storage import open_repository
from service.storage.mongo import MongoRepository
from service.storage.pii import Keyring, PiiCodec
from service.storage.sqlite import SqliteRepository
from service.storage_url import SCHEMES, Scheme, scheme_of

CODEC = PiiCodec(Keyring.generate())
EXAMPLES = {
    "sqlite:///": "sqlite:///var/customers.db",
    "mongomock://": "mongomock://",
    "mongodb://": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=10",
    "mongodb+srv://": "mongodb+srv://user:secret@cluster.example.net/",
}
ADAPTERS = {"sqlite": SqliteRepository, "mongo": MongoRepository}


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.prefix)
async def test_every_scheme_is_accepted_and_opens_its_adapter(scheme: Scheme) -> None:
    url = EXAMPLES[scheme.prefix]
    assert scheme_of(url) == scheme
    assert load_settings(environ={}, overrides={"storage": {"url": url}}).storage.url == url
    if scheme.prefix == "mongodb+srv://":
        return  # resolving the SRV record needs DNS
    repository = open_repository(url, "customers", CODEC)
    assert isinstance(repository, ADAPTERS[scheme.adapter])
    await repository.close()


@pytest.mark.parametrize(
    "url", ["sqlite:///", "sqlite://x.db", "postgres://db/", "", "SQLITE:///a"]
)
def test_other_urls_are_refused_by_the_loader_and_the_opener(url: str) -> None:
    assert scheme_of(url) is None
    with pytest.raises(SettingsError, match="must start with sqlite:///, mongomock://"):
        load_settings(environ={}, overrides={"storage": {"url": url}})
    with pytest.raises(ValueError, match="storage.url must start with"):
        open_repository(url, "customers", CODEC)
