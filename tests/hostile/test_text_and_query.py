"""Text that is not printable, and query parameters given twice: 422 on the field, nothing
stored; text that is printable is stored in NFC."""

from __future__ import annotations

import pytest

from service.customers.model import REQUEST_FIELDS
from tests.factories import VALID_BODY, assert_problem
from tests.hostile.conftest import stored_count

NOT_PRINTABLE = [
    pytest.param("Maria\x00", id="nul"),
    pytest.param("Maria\x1b[31m", id="ansi-escape"),
    pytest.param("Maria\nSilva", id="line-feed"),
    pytest.param("Maria\rSilva", id="carriage-return"),
    pytest.param("Maria\tSilva", id="tab"),
    pytest.param("Maria\x7f", id="delete"),
    pytest.param("Maria\x9b", id="c1-csi"),
    pytest.param("Maria\u2028Silva", id="line-separator"),
    pytest.param("Maria\u2029", id="paragraph-separator"),
    pytest.param("Maria\ue000", id="private-use"),
    pytest.param("Maria\U000e0001", id="language-tag-is-fine-but-unassigned-is-not\U0010fffe"),
]
BLANK = [
    pytest.param("\u200b", id="zero-width-space"),
    pytest.param("\ufeff", id="bom"),
    pytest.param("\u200e\u200f", id="direction-marks"),
    pytest.param("\u202e", id="rtl-override"),
    pytest.param("\u2060\u200d", id="word-joiner-zwj"),
    pytest.param(" \u00a0 \u3000 ", id="spaces-only"),
    pytest.param("\u3164", id="hangul-filler"),
    pytest.param("\u2800", id="braille-blank"),
    pytest.param("\u0301", id="lone-combining-mark"),
    pytest.param("", id="empty"),
]
# every optional text field of the field table, and the name
TEXT_FIELDS = ["name"] + [f.name for f in REQUEST_FIELDS if f.spec.request == "optional"]


def _codes(problem):
    return [(error["field"], error["code"]) for error in problem["errors"]]


@pytest.mark.parametrize("value", NOT_PRINTABLE)
async def test_control_and_non_printable_characters_are_refused(client, value):
    if value.startswith("Maria\U000e0001"):
        value = "Maria\U000e0080"  # an unassigned code point
    response = await client.post(
        "/api/v1/customers", json={**VALID_BODY, **dict.fromkeys(TEXT_FIELDS, value)}
    )
    problem = await assert_problem(response, 422)
    assert sorted(_codes(problem)) == [
        (field, "invalid_characters") for field in sorted(TEXT_FIELDS)
    ]
    assert await stored_count(client) == 0


@pytest.mark.parametrize("value", BLANK)
async def test_values_that_show_nothing_are_refused(client, value):
    response = await client.post(
        "/api/v1/customers", json={**VALID_BODY, **dict.fromkeys(TEXT_FIELDS, value)}
    )
    problem = await assert_problem(response, 422)
    assert sorted(_codes(problem)) == [(field, "blank") for field in sorted(TEXT_FIELDS)]
    assert await stored_count(client) == 0


async def test_patch_refuses_invisible_name_and_keeps_the_old_one(client, stored_id):
    response = await client.patch(f"/api/v1/customers/{stored_id}", json={"name": "\u200b\u200b"})
    await assert_problem(response, 422)
    stored = await (await client.get(f"/api/v1/customers/{stored_id}")).json()
    assert stored["name"] == VALID_BODY["name"]


async def test_text_is_stored_in_nfc_with_spaces_folded(client):
    decomposed = "  Jose\u0301   da\u00a0Silva\u200b "  # e + combining acute, nbsp, zwsp inside
    response = await client.post("/api/v1/customers", json={**VALID_BODY, "name": decomposed})
    assert response.status == 201
    assert (await response.json())["name"] == "Jos\u00e9 da Silva\u200b"


@pytest.mark.parametrize(
    ("local", "other"),
    [("stra\u00dfe", "strasse"), ("\u0130nci", "inci"), ("STRA\u00dfE", "STRASSE")],
    ids=["sharp-s", "dotted-capital-i", "upper-case-sharp-s"],
)
async def test_emails_that_only_case_folding_would_merge_are_two_mailboxes(client, local, other):
    from tests.factories import CPFS

    first = await client.post(
        "/api/v1/customers", json={**VALID_BODY, "email": f"{local}@example.com"}
    )
    assert first.status == 201, await first.text()
    second = await client.post(
        "/api/v1/customers", json={**VALID_BODY, "email": f"{other}@example.com", "cpf": CPFS[1]}
    )
    assert second.status == 201, await second.text()
    emails = {(await first.json())["email"], (await second.json())["email"]}
    assert len(emails) == 2


REPEATED = [
    pytest.param("limit=5&limit=6", "limit", id="limit"),
    pytest.param("limit=5&limit=5", "limit", id="limit-same-value"),
    pytest.param("email=a@example.com&email=b@example.com", "email", id="email"),
    pytest.param("cpf=52998224725&cpf=11144477735", "cpf", id="cpf"),
    pytest.param("cursor=a&cursor=b", "cursor", id="cursor"),
    pytest.param("cpf=1&email=x@example.com&cpf=2", "cpf", id="interleaved"),
    pytest.param("limit=5&limit", "limit", id="second-without-value"),
]


@pytest.mark.parametrize(("query", "field"), REPEATED)
async def test_repeated_query_parameters_are_refused(client, query, field):
    response = await client.get(f"/api/v1/customers?{query}")
    problem = await assert_problem(response, 422)
    assert (field, "repeated") in _codes(problem)


QUERY_VALUES = [
    pytest.param("email", "%00maria@example.com", "invalid_characters", id="email-nul"),
    pytest.param("email", "maria%0A@example.com", "invalid_characters", id="email-lf"),
    pytest.param("cpf", "%1B%5B31m", "invalid_characters", id="cpf-ansi"),
    pytest.param("cursor", "abc%0D%0A", "invalid_characters", id="cursor-crlf"),
    pytest.param("cpf", "%E2%80%8B", "blank", id="cpf-zero-width"),
    pytest.param("email", "%E2%80%8E", "blank", id="email-direction-mark"),
    pytest.param("cursor", "%20%20", "blank", id="cursor-spaces"),
    pytest.param("limit", "%00", "invalid_characters", id="limit-nul"),
]


@pytest.mark.parametrize(("name", "value", "code"), QUERY_VALUES)
async def test_query_values_must_be_printable(client, name, value, code):
    response = await client.get(f"/api/v1/customers?{name}={value}")
    problem = await assert_problem(response, 422)
    assert _codes(problem) == [(name, code)]


@pytest.mark.parametrize("name", ["%00", "a%0Ab", "%C2%85", "%E2%80%8B", "%1B%5B31m"])
async def test_query_names_must_be_printable_and_are_not_echoed(client, name):
    response = await client.get(f"/api/v1/customers?{name}=1")
    problem = await assert_problem(response, 400)
    assert "errors" not in problem


async def test_filter_value_is_normalized_before_the_lookup(client, stored_id):
    response = await client.get("/api/v1/customers", params={"email": "  maria.silva@EXAMPLE.com "})
    assert response.status == 200
    assert [c["id"] for c in (await response.json())["data"]] == [stored_id]
