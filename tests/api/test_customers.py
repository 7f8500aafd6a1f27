"""The customer registry end to end: HTTP in, every storage adapter underneath (the
`storage` fixture: SQLite, mongomock, and a real MongoDB when MONGODB_URL is set)."""

import asyncio

import pytest

from tests.factories import CPFS, VALID_BODY, assert_problem, customer_body
from tests.fakes import MISSING_CEP


async def test_register_stores_canonical_values_and_the_address(client):
    response = await client.post("/api/v1/customers", json=VALID_BODY)
    assert response.status == 201
    created = await response.json()
    assert response.headers["Location"] == f"/api/v1/customers/{created['id']}"
    assert created["email"] == "maria.silva@example.com"
    assert created["phone"] == "+5511912345678"
    assert created["cpf"] == "52998224725"
    assert created["name"] == "Maria da Silva"
    resolved_at = created["address"].pop("resolved_at")
    assert resolved_at.endswith("Z") and resolved_at <= created["created_at"]  # ISO text, UTC
    assert created["address"] == {
        "cep": "01001000",
        "street": "Praça da Sé",
        "neighborhood": "Sé",
        "city": "São Paulo",
        "state": "SP",
        "number": "100",
        "complement": None,
        "source": "viacep",
    }
    assert created["created_at"].endswith("Z") and created["created_at"] == created["updated_at"]

    fetched = await client.get(response.headers["Location"])
    assert fetched.status == 200
    address = {**created["address"], "resolved_at": resolved_at}
    assert await fetched.json() == {**created, "address": address}


@pytest.mark.parametrize(
    ("duplicate", "field"),
    [
        ({"email": "MARIA.SILVA@example.com", "cpf": CPFS[1]}, "email"),
        ({"email": "other@example.com", "cpf": "52998224725"}, "cpf"),
    ],
)
async def test_same_email_in_other_case_or_same_cpf_is_already_exists(client, duplicate, field):
    assert (await client.post("/api/v1/customers", json=VALID_BODY)).status == 201
    response = await client.post("/api/v1/customers", json={**VALID_BODY, **duplicate})
    await assert_problem(response, 422)
    body = await response.json()
    assert body["errors"] == [
        {"field": field, "code": "already_exists", "message": body["errors"][0]["message"]}
    ]
    assert len((await (await client.get("/api/v1/customers")).json())["data"]) == 1


async def test_every_failing_field_is_named_at_once(client):
    bad = {
        **VALID_BODY,
        "email": "not-an-email",
        "phone": "123",
        "cpf": "529.982.247-24",
        "cep": MISSING_CEP,
    }
    response = await client.post("/api/v1/customers", json=bad)
    await assert_problem(response, 422)
    body = await response.json()
    assert {(e["field"], e["code"]) for e in body["errors"]} == {
        ("email", "invalid"),
        ("phone", "invalid"),
        ("cpf", "invalid"),
        ("cep", "not_found"),
    }
    assert body["type"].endswith("/invalid-fields") and body["title"] and body["detail"]


@pytest.mark.parametrize("cpf", [f"{d * 3}.{d * 3}.{d * 3}-{d * 2}" for d in "123456789"])
async def test_cpfs_of_one_repeated_digit_are_rejected(client, cpf):
    response = await client.post("/api/v1/customers", json={**VALID_BODY, "cpf": cpf})
    await assert_problem(response, 422)
    assert [(e["field"], e["code"]) for e in (await response.json())["errors"]] == [
        ("cpf", "invalid")
    ]


async def test_a_cep_that_does_not_exist_is_not_found(client, viacep):
    response = await client.post("/api/v1/customers", json={**VALID_BODY, "cep": "99999-999"})
    await assert_problem(response, 422)
    assert [(e["field"], e["code"]) for e in (await response.json())["errors"]] == [
        ("cep", "not_found")
    ]
    assert viacep.calls == 1


async def test_viacep_down_falls_back_to_the_offline_directory(client, viacep):
    viacep.down = True
    response = await client.post("/api/v1/customers", json=VALID_BODY)
    assert response.status == 201
    address = (await response.json())["address"]
    assert (address["street"], address["source"]) == ("Praça da Sé", "offline")


async def test_every_provider_down_is_503_and_nothing_is_stored(make_client, viacep):
    client = await make_client({"cep": {"providers": ["viacep"]}})
    viacep.down = True
    response = await client.post("/api/v1/customers", json=VALID_BODY)
    await assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) > 0
    assert (await (await client.get("/api/v1/customers")).json())["data"] == []


async def test_offline_miss_while_viacep_is_down_is_503_not_a_guess(client, viacep):
    viacep.down = True
    response = await client.post("/api/v1/customers", json={**VALID_BODY, "cep": "99999-999"})
    await assert_problem(response, 503)


@pytest.mark.parametrize("disable_precheck", [False, True])
async def test_twenty_concurrent_registrations_of_one_email_store_one(
    make_client, disable_precheck
):
    extra = {}
    if disable_precheck:  # then only the unique index stands between the racers
        extra = {"validators": [{"use": "email"}, {"use": "phone"}, {"use": "cpf"}, {"use": "cep"}]}
    client = await make_client(extra)
    emails = ["race@example.com", " RACE@example.com", "Race@Example.COM"]
    bodies = [{**VALID_BODY, "email": emails[i % 3], "cpf": CPFS[i]} for i in range(20)]
    responses = await asyncio.gather(*(client.post("/api/v1/customers", json=b) for b in bodies))
    statuses = sorted(r.status for r in responses)
    assert statuses == [201] + [422] * 19
    for response in responses:
        if response.status == 422:
            errors = (await response.json())["errors"]
            assert [(e["field"], e["code"]) for e in errors] == [("email", "already_exists")]
    page = await (await client.get("/api/v1/customers")).json()
    assert len(page["data"]) == 1


async def test_walking_the_cursor_returns_every_customer_once(client):
    ids = []
    for i in range(12):
        response = await client.post("/api/v1/customers", json=customer_body(i))
        ids.append((await response.json())["id"])
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "5", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/api/v1/customers", params=params)).json()
        pages += 1
        seen += [c["id"] for c in page["data"]]
        assert page["has_more"] is (page["next_cursor"] is not None)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids  # creation order, each exactly once
    assert pages == 3


async def test_filters_find_a_customer_by_canonical_email_or_cpf(client):
    for i in range(3):
        await client.post(
            "/api/v1/customers", json=customer_body(i, email=f"Person{i}@Example.com")
        )
    by_email = await (
        await client.get("/api/v1/customers", params={"email": " PERSON1@example.COM "})
    ).json()
    by_cpf = await (await client.get("/api/v1/customers", params={"cpf": "111.444.777-35"})).json()
    nobody = await (await client.get("/api/v1/customers", params={"cpf": "00000000000"})).json()
    assert [c["email"] for c in by_email["data"]] == ["person1@example.com"]
    assert [c["cpf"] for c in by_cpf["data"]] == ["11144477735"]
    assert nobody == {"data": [], "has_more": False, "next_cursor": None}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"cursor": "not-a-cursor!"},
        {"emial": "typo@example.com"},
    ],
)
async def test_bad_list_queries_are_client_errors(client, params):
    response = await client.get("/api/v1/customers", params=params)
    assert response.status in (400, 422)
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize(
    ("body", "status", "fields"),
    [
        ('{"name": "Maria",', 400, None),
        ("[1, 2]", 400, None),
        ('"just a string"', 400, None),
        ({**VALID_BODY, "email": {"$ne": ""}}, 422, {("email", "invalid_type")}),
        ({**VALID_BODY, "number": 100}, 422, {("number", "invalid_type")}),
        ({**VALID_BODY, "role": "admin"}, 422, {("role", "unknown_field")}),
        (
            {k: v for k, v in VALID_BODY.items() if k not in ("cpf", "name")},
            422,
            {("cpf", "required"), ("name", "required")},
        ),
        ({**VALID_BODY, "name": "   "}, 422, {("name", "blank")}),
        ({**VALID_BODY, "cpf": None}, 422, {("cpf", "null")}),
    ],
)
async def test_malformed_input_is_a_clear_4xx_problem(client, body, status, fields):
    if isinstance(body, str):
        response = await client.post(
            "/api/v1/customers", data=body, headers={"Content-Type": "application/json"}
        )
    else:
        response = await client.post("/api/v1/customers", json=body)
    await assert_problem(response, status)
    problem = await response.json()
    assert problem["status"] == status and "Traceback" not in await response.text()
    if fields is not None:
        assert {(e["field"], e["code"]) for e in problem["errors"]} == fields
    assert (await (await client.get("/api/v1/customers")).json())["data"] == []


async def test_a_body_that_is_not_json_is_415_and_none_is_400(client):
    await assert_problem(
        await client.post(
            "/api/v1/customers",
            data="name=Maria",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        415,
    )
    await assert_problem(await client.post("/api/v1/customers"), 400)


async def test_a_body_over_the_limit_is_413(make_client):
    client = await make_client({"server": {"max_body_bytes": 2048}})
    response = await client.post("/api/v1/customers", json={**VALID_BODY, "name": "M" * 4096})
    await assert_problem(response, 413)


@pytest.mark.parametrize("customer_id", ["0123456789abcdef01234567", "nope", "1" * 25])
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_unknown_or_malformed_ids_are_404(client, method, customer_id):
    response = await client.request(
        method,
        f"/api/v1/customers/{customer_id}",
        json={"name": "X"} if method == "PATCH" else None,
    )
    await assert_problem(response, 404)


async def test_patch_revalidates_only_what_changes(client, viacep):
    viacep.addresses["20040020"] = {
        "street": "Praça Pio X",
        "neighborhood": "Centro",
        "city": "Rio de Janeiro",
        "state": "RJ",
    }
    created = await (await client.post("/api/v1/customers", json=VALID_BODY)).json()
    url = f"/api/v1/customers/{created['id']}"
    calls = viacep.calls

    response = await client.patch(url, json={"phone": "+55 21 2345-6789", "complement": "fundos"})
    assert response.status == 200
    changed = await response.json()
    assert changed["phone"] == "+552123456789"
    assert changed["address"]["complement"] == "fundos"
    assert changed["address"]["street"] == "Praça da Sé"
    assert viacep.calls == calls  # the CEP was not touched, so not looked up again

    moved = await (await client.patch(url, json={"cep": "20040-020", "number": None})).json()
    # a new CEP is a new lookup: its resolved_at is that lookup's time (RFC 3339, sortable)
    assert moved["address"]["resolved_at"] >= changed["address"]["resolved_at"]
    assert moved["address"] == {
        **changed["address"],
        "resolved_at": moved["address"]["resolved_at"],
        "cep": "20040020",
        "street": "Praça Pio X",
        "neighborhood": "Centro",
        "city": "Rio de Janeiro",
        "state": "RJ",
        "number": None,
    }
    assert (await (await client.get(url)).json()) == moved

    bad = await client.patch(url, json={"phone": "123", "cpf": "111.111.111-11"})
    await assert_problem(bad, 422)
    assert (await (await client.get(url)).json()) == moved  # nothing half-written


async def test_patch_to_a_taken_email_is_already_exists_but_own_email_is_fine(client):
    first = await (await client.post("/api/v1/customers", json=customer_body(0))).json()
    second = await (await client.post("/api/v1/customers", json=customer_body(1))).json()
    url = f"/api/v1/customers/{second['id']}"
    taken = await client.patch(url, json={"email": first["email"].upper()})
    await assert_problem(taken, 422)
    assert [(e["field"], e["code"]) for e in (await taken.json())["errors"]] == [
        ("email", "already_exists")
    ]
    same = await client.patch(url, json={"email": second["email"].upper()})
    assert same.status == 200


async def test_patch_races_are_caught_by_the_index(make_client):
    client = await make_client({"validators": [{"use": "cpf"}]})  # no uniqueness pre-checks
    first = await (await client.post("/api/v1/customers", json=customer_body(0))).json()
    second = await (await client.post("/api/v1/customers", json=customer_body(1))).json()
    response = await client.patch(f"/api/v1/customers/{second['id']}", json={"cpf": first["cpf"]})
    await assert_problem(response, 422)
    assert [(e["field"], e["code"]) for e in (await response.json())["errors"]] == [
        ("cpf", "already_exists")
    ]


async def test_delete_closes_the_customer(client):
    """Closed, not gone: hidden from this caller, its email and CPF still taken (the
    lifecycle itself: tests/api/test_lifecycle.py)."""
    created = await (await client.post("/api/v1/customers", json=VALID_BODY)).json()
    url = f"/api/v1/customers/{created['id']}"
    response = await client.delete(url)
    assert response.status == 204
    await assert_problem(await client.get(url), 404)
    await assert_problem(await client.delete(url), 404)
    again = await client.post("/api/v1/customers", json=VALID_BODY)
    await assert_problem(again, 422)
    assert {e["code"] for e in (await again.json())["errors"]} == {"already_exists"}


async def test_a_disabled_validator_really_stops_checking(make_client):
    client = await make_client(
        {
            "validators": [
                {"use": "email"},
                {"use": "phone"},
                {"use": "cpf", "enabled": False},
                {"use": "cep"},
            ]
        }
    )
    response = await client.post("/api/v1/customers", json={**VALID_BODY, "cpf": "123"})
    assert response.status == 201
    assert (await response.json())["cpf"] == "123"


async def test_without_the_cep_validator_the_address_is_not_enriched(make_client, viacep):
    client = await make_client({"validators": [{"use": "email"}, {"use": "cpf"}]})
    response = await client.post("/api/v1/customers", json={**VALID_BODY, "cep": "99999-999"})
    assert response.status == 201
    address = (await response.json())["address"]
    assert (address["cep"], address["street"], address["source"]) == ("99999-999", None, None)
    assert viacep.calls == 0


async def test_unknown_routes_and_methods_are_problems(client):
    await assert_problem(await client.get("/api/v1/nothing"), 404)
    response = await client.put("/api/v1/customers", json=VALID_BODY)
    await assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]
