"""The repository on its own: indexes, duplicates, pages, ids (mongomock, and real MongoDB
when MONGODB_URL is set)."""

import asyncio
from datetime import UTC

import pytest

from service.errors import InvalidFields, MalformedRequest
from service.storage.repository import (
    CustomerRepository,
    decode_cursor,
    email_key,
    parse_id,
    redact_url,
)


@pytest.fixture
async def repository(storage):
    repo = CustomerRepository.from_url(storage["url"], storage["database"])
    await repo.ensure_indexes()
    yield repo
    repo.close()


def customer(email="maria@example.com", cpf="52998224725"):
    return {
        "name": "Maria",
        "email": email,
        "phone": "+5511912345678",
        "cpf": cpf,
        "address": {"cep": "01001000", "number": None, "complement": None},
    }


async def test_insert_returns_the_stored_customer_with_an_opaque_id(repository):
    stored = await repository.insert(customer())
    assert parse_id(stored["id"]) is not None
    assert "_id" not in stored and "email_key" not in stored
    assert stored["created_at"] == stored["updated_at"]
    fetched = await repository.get(stored["id"])
    for stamp in ("created_at", "updated_at"):  # mongomock hands datetimes back naive
        fetched[stamp] = fetched[stamp].replace(tzinfo=UTC)
    assert fetched == stored


async def test_the_unique_index_names_every_clashing_field(repository):
    await repository.insert(customer())
    with pytest.raises(InvalidFields) as both:
        await repository.insert(customer(email=" MARIA@Example.com "))
    assert [(e.field, e.code) for e in both.value.errors] == [
        ("email", "already_exists"),
        ("cpf", "already_exists"),
    ]
    with pytest.raises(InvalidFields) as only_cpf:
        await repository.insert(customer(email="other@example.com"))
    assert [e.field for e in only_cpf.value.errors] == ["cpf"]


async def test_concurrent_inserts_of_one_email_store_exactly_one(repository):
    results = await asyncio.gather(
        *(repository.insert(customer(cpf=f"{i:011d}")) for i in range(20)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, dict) for r in results) == 1
    assert all(isinstance(r, InvalidFields) for r in results if not isinstance(r, dict))
    assert len((await repository.page(limit=100)).items) == 1


async def test_update_clash_excludes_the_customer_itself(repository):
    first = await repository.insert(customer())
    second = await repository.insert(customer(email="joao@example.com", cpf="11144477735"))
    same = await repository.update(first["id"], {"email": "MARIA@example.com"})
    assert same is not None and same["email"] == "MARIA@example.com"
    with pytest.raises(InvalidFields) as clash:
        await repository.update(second["id"], {"cpf": "52998224725"})
    assert [e.field for e in clash.value.errors] == ["cpf"]
    assert (await repository.get(second["id"]))["cpf"] == "11144477735"


async def test_exists_is_case_insensitive_for_email(repository):
    stored = await repository.insert(customer())
    assert await repository.exists("email", "Maria@EXAMPLE.com")
    assert not await repository.exists("email", "Maria@EXAMPLE.com", exclude_id=stored["id"])
    assert not await repository.exists("cpf", "11144477735")


async def test_pages_follow_creation_order(repository):
    ids = [
        (await repository.insert(customer(f"c{i}@example.com", f"{i:011d}")))["id"]
        for i in range(7)
    ]
    first = await repository.page(limit=3)
    second = await repository.page(limit=3, cursor=first.next_cursor)
    last = await repository.page(limit=3, cursor=second.next_cursor)
    assert [c["id"] for c in first.items + second.items + last.items] == ids
    assert (first.has_more, second.has_more, last.has_more) == (True, True, False)
    assert last.next_cursor is None


@pytest.mark.parametrize("cursor", ["", "!!!", "YWJj", "x" * 40])
def test_a_cursor_we_did_not_issue_is_malformed(cursor):
    with pytest.raises(MalformedRequest):
        decode_cursor(cursor)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "nope",
        "0123456789abcdef0123456",
        "0123456789abcdef012345678",
        "0123456789abcdef0123456g",
    ],
)
def test_malformed_ids_parse_to_none(value):
    assert parse_id(value) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mongodb://user:p%40ss@db:27017/x", "mongodb://db:27017/x"),
        ("mongodb+srv://u:p@cluster.example.net", "mongodb+srv://cluster.example.net"),
        ("mongodb://db:27017", "mongodb://db:27017"),
    ],
)
def test_redact_url_drops_credentials(url, shown):
    assert redact_url(url) == shown


def test_email_key_is_trimmed_and_casefolded():
    assert email_key("  Maria.Silva@Example.COM ") == "maria.silva@example.com"
