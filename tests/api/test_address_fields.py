"""`street` and `neighborhood` from the caller (DESIGN.md "Request"): kept where the CEP's
address names none, 422 `conflicts_with_cep` where it names another, accepted when it names
the same one; and `address.resolved_at`."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import VALID_BODY
from tests.fakes import GENERIC_CEP

GENERIC = {**VALID_BODY, "cep": "78455-000"}


async def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status
    assert response.content_type == "application/problem+json"
    return dict(await response.json())


def _codes(problem: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((e["field"], e["code"]) for e in problem["errors"])


async def test_a_generic_cep_keeps_the_callers_street_and_neighborhood(client: Any) -> None:
    body = {**GENERIC, "street": " Rua  das Flores ", "neighborhood": "Centro"}
    response = await client.post("/api/v1/customers", json=body)
    assert response.status == 201
    address = (await response.json())["address"]
    assert address["cep"] == GENERIC_CEP
    assert (address["street"], address["neighborhood"]) == ("Rua das Flores", "Centro")
    assert (address["city"], address["state"]) == ("Lucas do Rio Verde", "MT")
    assert address["resolved_at"].endswith("Z")


async def test_a_generic_cep_without_a_street_stores_none_given(client: Any) -> None:
    response = await client.post("/api/v1/customers", json=GENERIC)
    assert response.status == 201
    assert not (await response.json())["address"]["street"]


@pytest.mark.parametrize(
    ("street", "neighborhood"),
    [("Praça da Sé", "Sé"), ("  praça  DA sé ", "SÉ"), ("PRAÇA DA SÉ", None)],
)
async def test_the_ceps_own_street_is_accepted_and_stored_as_the_cep_names_it(
    client: Any, street: str, neighborhood: str | None
) -> None:
    body = {
        **VALID_BODY,
        "street": street,
        **({"neighborhood": neighborhood} if neighborhood else {}),
    }
    response = await client.post("/api/v1/customers", json=body)
    assert response.status == 201
    address = (await response.json())["address"]
    assert (address["street"], address["neighborhood"]) == ("Praça da Sé", "Sé")


async def test_another_street_than_the_ceps_is_conflicts_with_cep(client: Any) -> None:
    body = {**VALID_BODY, "street": "Rua Augusta", "neighborhood": "Consolação"}
    problem = await _problem(await client.post("/api/v1/customers", json=body), 422)
    assert _codes(problem) == [
        ("neighborhood", "conflicts_with_cep"),
        ("street", "conflicts_with_cep"),
    ]
    assert "Augusta" not in str(problem)  # what the caller sent is not echoed
    page = await (await client.get("/api/v1/customers")).json()
    assert page["data"] == []


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(street=st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=30))
async def test_any_other_printable_street_conflicts(client: Any, street: str) -> None:
    body = {**VALID_BODY, "street": street}
    response = await client.post("/api/v1/customers", json=body)
    if " ".join(street.split()).casefold() == "praça da sé":  # only the CEP's own street
        assert response.status == 201
        await client.delete(f"/api/v1/customers/{(await response.json())['id']}")
    else:
        assert _codes(await _problem(response, 422)) == [("street", "conflicts_with_cep")]


async def test_patch_of_the_street_alone_is_checked_against_the_stored_cep(client: Any) -> None:
    named = await (await client.post("/api/v1/customers", json=VALID_BODY)).json()
    problem = await _problem(
        await client.patch(f"/api/v1/customers/{named['id']}", json={"street": "Rua X"}), 422
    )
    assert _codes(problem) == [("street", "conflicts_with_cep")]

    body = {**GENERIC, "email": "joao@example.com", "cpf": "111.444.777-35"}
    generic = await (await client.post("/api/v1/customers", json=body)).json()
    response = await client.patch(f"/api/v1/customers/{generic['id']}", json={"street": "Rua Nova"})
    assert response.status == 200
    changed = (await response.json())["address"]
    assert changed["street"] == "Rua Nova"
    assert changed["resolved_at"] == generic["address"]["resolved_at"]  # no new CEP


async def test_a_new_cep_drops_the_callers_street(client: Any) -> None:
    body = {**GENERIC, "street": "Rua das Flores"}
    created = await (await client.post("/api/v1/customers", json=body)).json()
    response = await client.patch(f"/api/v1/customers/{created['id']}", json={"cep": "01001000"})
    assert response.status == 200
    address = (await response.json())["address"]
    assert (address["street"], address["city"]) == ("Praça da Sé", "São Paulo")
    assert address["resolved_at"] >= created["address"]["resolved_at"]


@pytest.mark.parametrize("field", ["street", "neighborhood"])
@pytest.mark.parametrize(
    ("value", "code"), [("Rua\x00", "invalid_characters"), ("\u200b", "blank"), (7, "invalid_type")]
)
async def test_the_new_fields_follow_the_text_rules(
    client: Any, field: str, value: Any, code: str
) -> None:
    problem = await _problem(
        await client.post("/api/v1/customers", json={**GENERIC, field: value}), 422
    )
    assert _codes(problem) == [(field, code)]
