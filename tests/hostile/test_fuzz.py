"""Property-based: arbitrary bytes and arbitrary JSON to POST and PATCH never get a 5xx,
never store anything on a 4xx, and never put a traceback in the logs."""

from __future__ import annotations

import json
import logging

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import VALID_BODY
from tests.hostile.conftest import stored_count

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # one app for all examples
)

HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-8",
                "application/json; charset=foobar",
                "application/merge-patch+json",
                "text/plain",
                "application/x-www-form-urlencoded",
            ]
        ),
        "Content-Encoding": st.sampled_from(["gzip", "deflate", "br", "identity", "x-nope"]),
    },
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Objects close to a valid customer, so the fuzzing reaches the fields and validators.
FIELD_NAMES = st.sampled_from([*VALID_BODY, "complement", "id", "address", "__proto__", "$set"])
NEAR_CUSTOMERS = st.dictionaries(FIELD_NAMES, JSON_VALUES | st.text(), max_size=8).map(
    lambda changes: {**VALID_BODY, **changes}
)
BODIES = (
    st.binary(max_size=400).map(lambda raw: ("raw", raw))
    | JSON_VALUES.map(lambda value: ("json", value))
    | NEAR_CUSTOMERS.map(lambda value: ("json", value))
)


def encode(kind: str, value: object) -> bytes:
    if kind == "raw":
        assert isinstance(value, bytes)
        return value
    # allow_nan: NaN and Infinity are what a hostile client would send too
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def no_traceback(caplog) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]


@FUZZ
@given(body=BODIES, headers=HEADERS)
async def test_post_anything(client, caplog, body, headers):
    before = await stored_count(client)
    response = await client.post("/api/v1/customers", data=encode(*body), headers=headers)
    assert response.status < 500, await response.text()
    after = await stored_count(client)
    assert after == before + (1 if response.status == 201 else 0)
    if response.status >= 400:
        assert response.content_type == "application/problem+json"
    no_traceback(caplog)


@FUZZ
@given(body=BODIES, headers=HEADERS)
async def test_patch_anything(client, stored_id, caplog, body, headers):
    url = f"/api/v1/customers/{stored_id}"
    before = await (await client.get(url)).json()
    response = await client.patch(url, data=encode(*body), headers=headers)
    assert response.status < 500, await response.text()
    if response.status >= 400:
        assert response.content_type == "application/problem+json"
        assert await (await client.get(url)).json() == before
    assert await stored_count(client) == 1
    no_traceback(caplog)
