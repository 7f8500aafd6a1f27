"""`db import` runs every line through the API's canonical forms and validators (finding #4
of the third review: 15 of 19 hostile lines were stored). Each hostile line is refused by
number while the valid lines around it are stored, on every adapter."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.__main__ import main
from service.customers.model import CUSTOMER_FIELDS
from service.importer import import_lines
from service.settings import load_settings
from service.validation.pipeline import ValidatorPipeline, load_validators
from tests.factories import make_cpf

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def line(i: int = 0, **changes: Any) -> dict[str, Any]:
    """A line as `db export --decrypt` writes it."""
    address = {
        "cep": "01001000",
        "street": "Praça da Sé",
        "neighborhood": "Sé",
        "city": "São Paulo",
        "state": "SP",
        "number": "100",
        "complement": None,
        "source": "viacep",
    }
    base = {
        "id": str(ObjectId.from_datetime(NOW + timedelta(seconds=i))),
        "name": "Maria da Silva",
        "email": f"maria{i}@example.com",
        "phone": "+5511912345678",
        "cpf": make_cpf(200_000_000 + 7919 * i),
        "address": address,
        "created_at": NOW.isoformat(),
        "updated_at": NOW.isoformat(),
    }
    return {**base, **changes}


HOSTILE = [
    pytest.param({"cpf": "11111111111"}, "cpf invalid", id="cpf-check-digits"),
    pytest.param({"cpf": "123"}, "cpf", id="cpf-short"),
    pytest.param({"email": "not-an-email"}, "email", id="email"),
    pytest.param({"phone": "123"}, "phone", id="phone"),
    pytest.param({"name": "Maria\x00"}, "name", id="nul-in-name"),
    pytest.param({"name": "Maria\x1b[31m"}, "name", id="esc-in-name"),
    pytest.param({"name": "Maria \u202eavliS"}, "name", id="rtl-override-in-name"),
    pytest.param({"name": "M" * 1_000_000}, "name", id="1mb-name"),
    pytest.param({"name": ["Maria"]}, "wrong types", id="list-name"),
    pytest.param({"name": 7}, "wrong types", id="number-name"),
    pytest.param({"phone": 5511912345678}, "wrong types", id="number-phone"),
    pytest.param({"id": "f" * 24}, "in the future", id="id-ffff"),
    pytest.param({"id": "XYZ"}, "24 lower-case hex", id="id-not-hex"),
    pytest.param({"address": "just a string"}, "address", id="address-string"),
    pytest.param({"address": None}, "address", id="address-null"),
    pytest.param({"role": "admin"}, "unknown keys", id="extra-key"),
    pytest.param({"_id": "x", "email_key": "y"}, "unknown keys", id="storage-keys"),
    pytest.param({"created_at": "2026-01-01T00:00:00"}, "UTC offset", id="naive-time"),
    pytest.param({"created_at": "yesterday"}, "ISO 8601", id="not-a-time"),
    pytest.param(
        {"created_at": "2026-02-01T00:00:00+00:00"}, "before created_at", id="updated-first"
    ),
]


def _address(**changes: Any) -> dict[str, Any]:
    return {**line()["address"], **changes}


HOSTILE_ADDRESS = [
    pytest.param({"street": "Rua \u202eA"}, "address.street", id="rtl-street"),
    pytest.param({"city": "São\x00Paulo"}, "address.city", id="nul-city"),
    pytest.param({"state": 35}, "address.state", id="number-state"),
    pytest.param({"cep": "0100100"}, "cep", id="cep-7-digits"),
    pytest.param({"cep": 1001000}, "address.cep", id="cep-number"),
    pytest.param({"zip": "x"}, "unknown address keys", id="address-extra-key"),
    pytest.param({"street": "R" * 201}, "too long", id="long-street"),
]


def _pipeline() -> ValidatorPipeline:
    return ValidatorPipeline(load_validators(load_settings().validators))


async def _import(repository: Any, codec: Any, lines: list[str], **kwargs: Any) -> Any:
    return await import_lines(repository, lines, codec, _pipeline(), **kwargs)


@pytest.mark.parametrize(("changes", "reason"), HOSTILE + HOSTILE_ADDRESS)
async def test_a_hostile_line_is_refused_by_number_and_the_others_are_stored(
    repository: Any, codec: Any, changes: dict[str, Any], reason: str
) -> None:
    if any(key in changes for key in ("cep", "street", "city", "state", "zip")):
        changes = {"address": _address(**changes)}
    lines = [json.dumps(line(0)), json.dumps(line(1, **changes)), json.dumps(line(2))]
    summary = await _import(repository, codec, lines)
    assert (summary.read, summary.stored, summary.already, summary.refused) == (3, 2, 0, 1)
    assert summary.refusals[0].startswith("line 2: ") and reason in summary.refusals[0]
    assert len(summary.refusals[0]) < 200  # names what is wrong, never the value
    page = await repository.page(limit=10)
    assert [c["email"] for c in page.items] == ["maria0@example.com", "maria2@example.com"]
    for stored in page.items:
        assert set(stored) <= {f.name for f in CUSTOMER_FIELDS}  # no `role`, no `_id`


async def test_a_formatted_cpf_is_stored_canonical_so_the_api_cannot_register_it_again(
    repository: Any, codec: Any
) -> None:
    summary = await _import(repository, codec, [json.dumps(line(0, cpf="529.982.247-25"))])
    assert summary.stored == 1
    assert (await repository.page(limit=1)).items[0]["cpf"] == "52998224725"
    assert await repository.exists("cpf", "52998224725")


async def test_two_lines_with_one_email_store_the_first_and_refuse_the_second(
    repository: Any, codec: Any
) -> None:
    lines = [json.dumps(line(0)), json.dumps(line(1, email="maria0@example.com"))]
    summary = await _import(repository, codec, lines)
    assert summary.stored == 1 and summary.refused == 1
    assert summary.refusals[0].startswith("line 2: ") and "email" in summary.refusals[0]


async def test_a_line_clashing_with_a_stored_customer_is_already_exists(
    repository: Any, codec: Any
) -> None:
    await _import(repository, codec, [json.dumps(line(0))])
    summary = await _import(repository, codec, [json.dumps(line(1, cpf=line(0)["cpf"]))])
    assert summary.refused == 1 and summary.stored == 0
    assert "already_exists" in summary.refusals[0] and "cpf" in summary.refusals[0]


async def test_cep_existence_is_checked_offline_only_on_request(
    repository: Any, codec: Any
) -> None:
    from service.cep.offline import OfflineProvider, resolve_db_path

    unknown = json.dumps(line(0, address=_address(cep="99999999")))
    skipped = await _import(repository, codec, [unknown])
    assert skipped.stored == 1  # the form is right; existence was not asked
    settings_ = load_settings()
    offline = OfflineProvider(resolve_db_path(settings_.cep.offline, settings_.base_dir))
    checked = await _import(
        repository, codec, [json.dumps(line(1, address=_address(cep="99999998")))], offline=offline
    )
    assert checked.refused == 1 and "cep not_found" in checked.refusals[0]
    known = await _import(repository, codec, [json.dumps(line(2))], offline=offline)
    assert known.stored == 1


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.lists(st.text(max_size=3), max_size=2),
        st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
        st.text(max_size=30),
    ),
    key=st.sampled_from(["name", "email", "phone", "cpf", "id", "created_at", "address"]),
)
async def test_any_value_in_any_field_is_stored_valid_or_refused_never_a_crash(
    repository: Any, codec: Any, value: Any, key: str
) -> None:
    i = next(_EXAMPLES)
    summary = await _import(repository, codec, [json.dumps(line(i, **{key: value}))])
    assert summary.stored + summary.already + summary.refused == 1
    if summary.stored:  # then it is what the API would store: text, canonical
        stored = await repository.get(line(i, **{key: value})["id"] if key != "id" else value)
        assert stored is not None
        assert all(isinstance(stored[name], str) for name in ("name", "email", "phone", "cpf"))
        assert isinstance(stored["address"], dict)


_EXAMPLES = itertools.count(100)


def test_the_command_prints_refusals_and_exits_1_without_a_traceback(
    tmp_path: Any, monkeypatch: Any, capsys: Any, codec: Any
) -> None:
    monkeypatch.setenv("CUSTOMERS__STORAGE__URL", f"sqlite:///{tmp_path / 'c.db'}")
    monkeypatch.setenv("CUSTOMERS_PII_KEYS", codec.keyring.to_json())
    source = tmp_path / "hostile.jsonl"
    changes: list[dict[str, Any]] = [p.values[0] for p in HOSTILE]  # type: ignore[misc]
    rows = [line(0)] + [line(i + 1, **change) for i, change in enumerate(changes)]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["db", "import", str(source)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.err.count("refused line ") == len(HOSTILE)
    assert (
        f"read {len(rows)} customers, stored 1, already there 0, refused {len(HOSTILE)}"
        in captured.out
    )
    assert "Maria\x00" not in captured.err and "M" * 100 not in captured.err
