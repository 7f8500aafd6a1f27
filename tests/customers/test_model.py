"""The field table: what derives from it, and records stored before a field existed."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from service.api.schemas import AddressSchema, CustomerCreateSchema, CustomerSchema
from service.cep.base import ENRICHED_FIELDS, Address
from service.customers.model import (
    ADDRESS_FIELDS,
    CEP_FIELDS,
    CUSTOMER_FIELDS,
    DEFAULT_MASKED,
    FIELDS,
    PERSONAL_FIELDS,
    REQUEST_FIELDS,
    changes_from,
    complete,
    from_json,
    new_customer,
    to_json,
)
from service.customers.view import public_view

STAMP = datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)


def test_the_schemas_are_the_field_table() -> None:
    assert list(CustomerCreateSchema().fields) == [f.name for f in REQUEST_FIELDS]
    assert list(CustomerSchema().fields) == [f.name for f in CUSTOMER_FIELDS]
    assert list(AddressSchema().fields) == [f.name for f in ADDRESS_FIELDS]
    required = {name for name, field in CustomerCreateSchema().fields.items() if field.required}
    assert required == {"name", "email", "phone", "cpf", "cep"}


def test_what_a_cep_adds_is_what_a_provider_answers_plus_when() -> None:
    assert set(CEP_FIELDS) == {*ENRICHED_FIELDS, "resolved_at"}
    assert {f.name for f in fields(Address)} == {"cep", *ENRICHED_FIELDS}


def test_personal_data_and_default_masking() -> None:
    assert DEFAULT_MASKED == {"cpf", "phone"}
    assert DEFAULT_MASKED <= PERSONAL_FIELDS
    # DESIGN.md "Lifecycle": what anonymization erases is the personal data
    assert PERSONAL_FIELDS == {
        "name", "email", "phone", "cpf", "cep", "street", "neighborhood", "number", "complement"
    }  # fmt: skip
    assert {"city", "state", "id", "created_at"}.isdisjoint(PERSONAL_FIELDS)


def test_a_record_stored_before_a_field_existed_reads_with_its_default() -> None:
    old = {
        "id": "0123456789abcdef01234567",
        "name": "Old",
        "email": "old@example.com",
        "phone": "+5511912345678",
        "cpf": "52998224725",
        "address": {"cep": "01001000", "city": "São Paulo"},  # before street, resolved_at...
        "created_at": STAMP,
        "updated_at": STAMP,
    }
    record = complete(old)
    assert set(record) == {f.name for f in CUSTOMER_FIELDS}
    assert set(record["address"]) == {f.name for f in ADDRESS_FIELDS}
    assert record["address"]["resolved_at"] is None and record["address"]["city"] == "São Paulo"
    view = public_view(old)
    assert view["address"]["resolved_at"] is None and view["address"]["street"] is None
    assert view["created_at"] == "2026-01-01T12:00:00Z"


@given(
    resolved_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    street=st.none() | st.text(max_size=20),
)
def test_json_round_trip_keeps_every_value(
    resolved_at: datetime | None, street: str | None
) -> None:
    record = complete(
        {
            "id": "0123456789abcdef01234567",
            "name": "N",
            "email": "e@example.com",
            "phone": "+5511912345678",
            "cpf": "52998224725",
            "address": {"cep": "01001000", "street": street, "resolved_at": resolved_at},
            "created_at": STAMP,
            "updated_at": STAMP,
        }
    )
    assert from_json(to_json(record)) == record
    assert all(not isinstance(v, datetime) for v in to_json(record)["address"].values())


def test_a_new_cep_replaces_the_whole_enrichment_but_not_what_the_caller_sent() -> None:
    # the `cep` validator disabled: only what the caller sent, never the old CEP's street
    changes = changes_from({"cep": "78455000", "street": "Rua A", "number": "7"})
    assert changes == {
        "address": {
            "cep": "78455000",
            "street": "Rua A",
            "neighborhood": None,
            "city": None,
            "state": None,
            "number": "7",
            "source": None,
            "resolved_at": None,
        }
    }
    # no CEP change: the address fields sent, nothing else
    assert changes_from({"complement": None, "name": "X"}) == {
        "name": "X",
        "address": {"complement": None},
    }


def test_a_new_customer_has_every_address_field() -> None:
    values: dict[str, Any] = {"name": "N", "cep": "01001000"}
    customer = new_customer(values)
    assert set(customer["address"]) == {f.name for f in ADDRESS_FIELDS}
    assert {f.name for f in FIELDS} >= set(customer) - {"address"}


@given(
    moment=st.datetimes(
        min_value=datetime(1000, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3))]),
    ),
)
def test_rendered_times_are_utc_seconds_with_z_whatever_the_zone(moment: datetime) -> None:
    """The UTC fast path (what storage returns) renders what the conversion renders."""
    view = public_view(complete({"created_at": moment, "updated_at": moment}))
    utc = moment.astimezone(UTC)
    assert view["created_at"] == view["updated_at"] == f"{utc:%Y-%m-%dT%H:%M:%S}Z"
    assert from_json(to_json(complete({"created_at": moment})))["created_at"] == moment
