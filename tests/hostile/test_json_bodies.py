"""Bodies that are not strict JSON objects: a 4xx problem, nothing stored, nothing changed."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from tests.factories import VALID_BODY, assert_problem
from tests.hostile.conftest import stored_count

FIELDS = json.dumps(VALID_BODY)[1:-1]  # the valid fields, to embed next to a hostile one


def deep(depth: int, opening: str = "[", closing: str = "]") -> bytes:
    return (opening * depth + closing * depth).encode()


JSON = "application/json"
# raw body, extra headers, expected status
CASES = [
    pytest.param(b'{"name": ' + b"1" * 5000 + b"}", {}, 400, id="int-5000-digits"),
    pytest.param(b'{"number": -' + b"9" * 5000 + b"}", {}, 400, id="negative-int-5000-digits"),
    pytest.param(b'{"x": [' + b"7" * 5000 + b"]}", {}, 400, id="int-5000-digits-unknown-field"),
    pytest.param(b"1" * 5000, {}, 400, id="int-5000-digits-top-level"),
    pytest.param(b'{"name": 1e999999}', {}, 422, id="float-overflow-is-not-a-string"),
    pytest.param(deep(30000), {}, 400, id="nested-lists-30000"),
    pytest.param(b'{"a":' * 10000 + b"1" + b"}" * 10000, {}, 400, id="nested-objects-10000"),
    pytest.param(b'{"name": ' + deep(100) + b"}", {}, 400, id="nested-in-field-100"),
    pytest.param(
        b'{"x": ' + deep(20, '[{"y":', "}]").replace(b'{"y":}', b"1") + b"}",
        {},
        400,
        id="nested-mixed-40",
    ),
    pytest.param(b'{"\\ud800": "x", ' + FIELDS.encode() + b"}", {}, 400, id="lone-surrogate-key"),
    pytest.param(b'{"a\\udc00b": 1}', {}, 400, id="low-surrogate-key"),
    pytest.param(b'{"na\\u0000me": "x"}', {}, 400, id="control-char-key"),
    pytest.param(b'{"name": "\xff\xfe"}', {}, 400, id="invalid-utf8"),
    pytest.param(b'{"name": "\xc0\xaf"}', {}, 400, id="overlong-utf8"),
    pytest.param(b'{"name": "\xed\xa0\x80"}', {}, 400, id="utf8-encoded-surrogate"),
    pytest.param(b"\xef\xbb\xbf{" + FIELDS.encode() + b"}", {}, 400, id="utf8-bom"),
    pytest.param(b'{"name": "a", ' + FIELDS.encode() + b"}", {}, 400, id="duplicate-key"),
    pytest.param(
        b'{"cpf": "529.982.247-25", ' + FIELDS.encode() + b"}",
        {},
        400,
        id="duplicate-key-same-value",
    ),
    pytest.param(b'{"x": {"a": 1, "a": 2}}', {}, 400, id="duplicate-nested-key"),
    pytest.param(b'{"name": NaN}', {}, 400, id="nan"),
    pytest.param(b'{"number": -Infinity}', {}, 400, id="infinity"),
    pytest.param(b"[]", {}, 400, id="array"),
    pytest.param(b"null", {}, 400, id="null"),
    pytest.param(b'"x"', {}, 400, id="string"),
    pytest.param(b"", {}, 400, id="empty"),
    pytest.param(b"   ", {}, 400, id="whitespace"),
    pytest.param(b'{"name": "Maria', {}, 400, id="truncated"),
    pytest.param(b"{}", {"Content-Type": JSON + "; charset=foobar"}, 415, id="charset-unknown"),
    pytest.param(b"{}", {"Content-Type": JSON + "; charset=latin-1"}, 415, id="charset-latin1"),
    pytest.param(
        "{}".encode("utf-16"), {"Content-Type": JSON + "; charset=utf-16"}, 415, id="charset-utf16"
    ),
    pytest.param(b"{}", {"Content-Type": "text/plain"}, 415, id="content-type-text"),
    pytest.param(b"this is not gzip", {"Content-Encoding": "gzip"}, 400, id="gzip-garbage"),
    pytest.param(
        b"\x00\x01\x02garbage", {"Content-Encoding": "deflate"}, 400, id="deflate-garbage"
    ),
    pytest.param(
        gzip.compress(json.dumps(VALID_BODY).encode())[:20],
        {"Content-Encoding": "gzip"},
        400,
        id="gzip-truncated",
    ),
    pytest.param(
        zlib.compress(b"{nope"), {"Content-Encoding": "deflate"}, 400, id="deflate-of-invalid-json"
    ),
]


def _headers(extra: dict[str, str]) -> dict[str, str]:
    return {"Content-Type": "application/json", **extra}


@pytest.mark.parametrize(("body", "extra", "status"), CASES)
async def test_refused_and_nothing_stored_or_changed(client, stored_id, body, extra, status):
    before = await (await client.get(f"/api/v1/customers/{stored_id}")).json()
    response = await client.post("/api/v1/customers", data=body, headers=_headers(extra))
    await assert_problem(response, status)
    response = await client.patch(
        f"/api/v1/customers/{stored_id}", data=body, headers=_headers(extra)
    )
    await assert_problem(response, status)
    assert await stored_count(client) == 1
    assert await (await client.get(f"/api/v1/customers/{stored_id}")).json() == before


async def test_gzip_body_that_is_valid_json_is_accepted(client):
    """The control: Content-Encoding itself is fine, only broken encodings are refused."""
    body = gzip.compress(json.dumps(VALID_BODY).encode())
    response = await client.post(
        "/api/v1/customers", data=body, headers=_headers({"Content-Encoding": "gzip"})
    )
    assert response.status == 201
    assert await stored_count(client) == 1


async def test_charset_utf8_in_any_case_is_accepted(client):
    response = await client.post(
        "/api/v1/customers",
        data=json.dumps(VALID_BODY).encode(),
        headers={"Content-Type": JSON + "; charset=UTF-8"},
    )
    assert response.status == 201


async def test_lone_surrogate_in_a_value_is_a_field_error(client):
    fields = FIELDS.replace('"name": "Maria da Silva", ', "")
    body = b'{"name": "Maria\\ud800", ' + fields.encode() + b"}"
    response = await client.post("/api/v1/customers", data=body, headers=_headers({}))
    problem = await assert_problem(response, 422)
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [("name", "invalid_characters")]
    assert await stored_count(client) == 0
