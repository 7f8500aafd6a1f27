"""The repository contract, run on every adapter (see conftest.py)."""

import asyncio
import re
from datetime import datetime, timedelta

import pytest

from service.customers.canonical import parse_id
from service.customers.errors import DuplicateCustomer, InvalidCursor
from service.customers.model import now
from service.storage.base import decode_cursor, encode_cursor, new_id, redact_url
from tests.factories import change
from tests.storage.conftest import LIFECYCLE_DEFAULTS, customer


async def test_round_trip_returns_domain_values(repository):
    stored = await repository.insert(customer(), change("create"))
    assert re.fullmatch(r"[0-9a-f]{24}", stored["id"])
    assert isinstance(stored["created_at"], datetime) and stored["created_at"].tzinfo
    assert stored["created_at"] == stored["updated_at"]
    assert {k: v for k, v in stored.items() if k not in ("id", "created_at", "updated_at")} == (
        customer() | LIFECYCLE_DEFAULTS
    )
    assert await repository.get(stored["id"]) == stored
    assert await repository.get(stored["id"].upper()) == stored  # the same id, spelled upper


@pytest.mark.parametrize("bad_id", ["", "nope", "0" * 23, "0" * 25, "0" * 23 + "g", "０" * 24])
async def test_an_id_no_customer_can_have_is_simply_unknown(repository, bad_id):
    assert await repository.get(bad_id) is None
    assert await repository.update(bad_id, {"name": "X"}, change("update")) is None
    assert await repository.delete(bad_id, change("close")) is False


async def test_the_email_key_is_lower_cased_never_folded(repository):
    await repository.insert(customer(email="straße@example.com"), change("create"))
    assert await repository.exists("email", " STRASSE@example.com ") is False
    assert await repository.exists("email", "Straße@Example.COM") is True
    await repository.insert(
        customer(email="strasse@example.com", cpf="11144477735"), change("create")
    )
    with pytest.raises(DuplicateCustomer) as clash:
        await repository.insert(
            customer(email="STRASSE@EXAMPLE.COM", cpf="22233344405"), change("create")
        )
    assert clash.value.fields == ("email",)


async def test_a_clash_names_every_taken_field(repository):
    await repository.insert(customer(), change("create"))
    with pytest.raises(DuplicateCustomer) as both:
        await repository.insert(customer(email="Maria@Example.com"), change("create"))
    assert both.value.fields == ("email", "cpf")
    with pytest.raises(DuplicateCustomer) as only_cpf:
        await repository.insert(customer(email="other@example.com"), change("create"))
    assert only_cpf.value.fields == ("cpf",)
    assert len((await repository.page(limit=10)).items) == 1


@pytest.mark.parametrize("shared", ["email", "cpf"])
async def test_fifty_concurrent_inserts_of_one_value_store_exactly_one(repository, shared):
    def nth(i):
        return customer(
            email="same@example.com" if shared == "email" else f"c{i}@example.com",
            cpf="52998224725" if shared == "cpf" else f"{i:011d}",
        )

    results = await asyncio.gather(
        *(repository.insert(nth(i), change("create")) for i in range(50)), return_exceptions=True
    )
    assert sum(isinstance(r, dict) for r in results) == 1
    errors = [r for r in results if not isinstance(r, dict)]
    assert all(isinstance(e, DuplicateCustomer) and e.fields == (shared,) for e in errors)
    assert len((await repository.page(limit=100)).items) == 1


async def test_pages_walk_to_the_end_without_duplicate_or_gap_while_inserts_happen(repository):
    before = [
        (await repository.insert(customer(f"c{i}@example.com", f"{i:011d}"), change("create")))[
            "id"
        ]
        for i in range(25)
    ]
    seen, cursor = [], None
    for round_ in range(100):
        page = await repository.page(limit=4, cursor=cursor)
        seen += [c["id"] for c in page.items]
        await repository.insert(
            customer(f"new{round_}@example.com", f"{1000 + round_:011d}"), change("create")
        )
        if not page.has_more:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen))  # no duplicate
    assert seen[: len(before)] == before  # no gap, creation order
    assert seen == sorted(seen)
    assert page.next_cursor is None


async def test_filters_find_by_email_key_and_cpf(repository):
    maria = await repository.insert(customer(), change("create"))
    await repository.insert(customer("joao@example.com", "11144477735"), change("create"))
    by_email = await repository.page(limit=20, filters={"email": " MARIA@example.com"})
    assert [c["id"] for c in by_email.items] == [maria["id"]]
    by_both = await repository.page(
        limit=20, filters={"email": "maria@example.com", "cpf": "52998224725"}
    )
    assert [c["id"] for c in by_both.items] == [maria["id"]]
    nobody = await repository.page(
        limit=20, filters={"email": "maria@example.com", "cpf": "11144477735"}
    )
    assert nobody.items == [] and not nobody.has_more


async def test_update_changes_only_what_it_names(repository):
    stored = await repository.insert(customer(), change("create"))
    updated = await repository.update(
        stored["id"].upper(), {"name": "Maria S.", "address": {"number": "100"}}, change("update")
    )
    assert updated["name"] == "Maria S." and updated["address"]["number"] == "100"
    assert updated["address"]["street"] == "Praça da Sé"  # untouched address fields stay
    assert updated["created_at"] == stored["created_at"]
    assert updated["updated_at"] >= stored["updated_at"]
    assert await repository.get(stored["id"]) == updated
    same = await repository.update(stored["id"], {"email": "MARIA@example.com"}, change("update"))
    assert same["email"] == "MARIA@example.com"  # its own email key is no clash


async def test_a_clash_on_update_changes_nothing(repository):
    await repository.insert(customer(), change("create"))
    joao = await repository.insert(customer("joao@example.com", "11144477735"), change("create"))
    with pytest.raises(DuplicateCustomer) as clash:
        await repository.update(joao["id"], {"name": "J", "cpf": "52998224725"}, change("update"))
    assert clash.value.fields == ("cpf",)
    assert await repository.get(joao["id"]) == joao


async def test_delete_removes_and_frees_the_unique_values(repository):
    stored = await repository.insert(customer(), change("create"))
    assert await repository.delete(stored["id"], change("close")) is True
    assert await repository.get(stored["id"]) is None
    assert await repository.delete(stored["id"], change("close")) is False
    assert not await repository.exists("email", "maria@example.com")
    await repository.insert(customer(), change("create"))


async def test_exists_excludes_the_customer_itself(repository):
    stored = await repository.insert(customer(), change("create"))
    assert await repository.exists("cpf", "52998224725")
    assert not await repository.exists("cpf", "52998224725", exclude_id=stored["id"])
    assert not await repository.exists("email", "MARIA@example.com", exclude_id=stored["id"])


async def test_restore_keeps_ids_and_is_idempotent(repository):
    original = await repository.insert(customer(), change("create"))
    copy = {**customer("joao@example.com", "11144477735"), "id": new_id()}
    copy |= {"created_at": original["created_at"], "updated_at": original["updated_at"]}
    assert await repository.restore([original, copy], change("create")) == 1
    assert await repository.restore([original, copy], change("create")) == 0
    assert await repository.get(copy["id"]) == copy | LIFECYCLE_DEFAULTS
    clash = {**copy, "id": new_id()}
    with pytest.raises(DuplicateCustomer):
        await repository.restore([clash], change("create"))


async def test_a_sound_database_has_nothing_to_report(repository):
    assert await repository.check() == []
    await repository.ping()


@pytest.mark.parametrize("cursor", ["", "!!!", "YWJj", "x" * 40, "é"])
async def test_a_cursor_we_did_not_issue_is_invalid(repository, cursor):
    with pytest.raises(InvalidCursor):
        await repository.page(limit=5, cursor=cursor)


def test_cursors_round_trip_ids():
    some_id = new_id()
    assert decode_cursor(encode_cursor(some_id)) == some_id
    assert parse_id(some_id.upper()) == some_id


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


async def test_a_record_without_the_newer_fields_reads_with_their_defaults(repository):
    """What an older export line (or a document written before the field) holds."""
    stamp = now()
    old = {**customer(), "id": new_id(), "created_at": stamp, "updated_at": stamp}
    old["address"] = {k: v for k, v in old["address"].items() if k not in ("resolved_at", "street")}
    assert await repository.restore([old], change("create")) == 1
    read = await repository.get(old["id"])
    assert read["address"]["resolved_at"] is None and read["address"]["street"] is None
    assert read["address"]["city"] == "São Paulo"


async def test_resolved_at_round_trips_as_a_utc_datetime(repository):
    resolved_at = now() - timedelta(days=3)
    draft = customer()
    draft["address"] = {**draft["address"], "resolved_at": resolved_at}
    stored = await repository.insert(draft, change("create"))
    read = await repository.get(stored["id"])
    assert read["address"]["resolved_at"] == resolved_at
    assert read["address"]["resolved_at"].tzinfo is not None
    assert (await repository.page(limit=1)).items[0] == read
