"""Finding #1 of the third review: with `Idempotency-Key`, a POST whose customer was stored
but whose answer could not be kept answered 503 "nothing was stored", and the retry got 409
for a minute, then 422 `already_exists`: the client never learnt its id. Now the claim's
token is the customer's id, so whatever failed after the insert, the answer and every retry
name the stored customer; a claim whose owner died is taken over, and answered from what
that owner stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.auth.local_issuer import issue_local_token
from service.storage.base import DatabaseUnavailable
from service.storage.idempotency import IN_FLIGHT_LEASE, RESPONSE_TTL, record_id
from service.typedefs import repository_key
from tests.conftest import ALL_SCOPES
from tests.factories import VALID_BODY as MARIA
from tests.factories import make_cpf


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def api(aiohttp_client: Any, make_settings: Any) -> Any:
    settings = make_settings()
    clock = Clock()
    client = await aiohttp_client(create_app(settings, wall_clock=clock))
    token = issue_local_token(settings, "tester", list(ALL_SCOPES), [], 600)

    def headers(key: str | None = None) -> dict[str, str]:
        found = {"Authorization": f"Bearer {token}"}
        return found if key is None else {**found, "Idempotency-Key": key}

    return client, clock, headers


async def stored_ids(client: Any, headers: Any) -> list[str]:
    page = await (await client.get("/api/v1/customers?limit=100", headers=headers())).json()
    return [c["id"] for c in page["data"]]


def _fail_completes(client: Any, monkeypatch: Any) -> list[int]:
    """The disk refuses the write that keeps the answer (after the insert committed)."""
    store = client.app[repository_key].idempotency
    refused: list[int] = []

    async def refuse(*args: Any, **kwargs: Any) -> None:
        refused.append(1)
        raise DatabaseUnavailable()

    monkeypatch.setattr(store, "complete", refuse)
    return refused


async def test_a_stored_customer_is_answered_201_when_its_answer_cannot_be_kept(
    api: Any, monkeypatch: Any
) -> None:
    client, clock, headers = api
    refused = _fail_completes(client, monkeypatch)
    first = await client.post("/api/v1/customers", json=MARIA, headers=headers("k1"))
    assert first.status == 201, await first.text()  # was 503 "nothing was stored"
    created = await first.json()
    assert refused and await stored_ids(client, headers) == [created["id"]]
    # retries, while the claim is live, after its lease, and after a sweep: the same id
    for advance in (timedelta(0), IN_FLIGHT_LEASE + timedelta(seconds=1), timedelta(hours=2)):
        clock.now += advance
        await client.app[repository_key].idempotency.sweep(clock())
        retry = await client.post("/api/v1/customers", json=MARIA, headers=headers("k1"))
        assert retry.status == 201, await retry.text()
        assert (await retry.json())["id"] == created["id"]
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert retry.headers["Location"] == first.headers["Location"]
    assert await stored_ids(client, headers) == [created["id"]]


async def test_once_the_disk_is_back_the_rebuilt_answer_is_kept(api: Any, monkeypatch: Any) -> None:
    client, clock, headers = api
    _fail_completes(client, monkeypatch)
    first = await (await client.post("/api/v1/customers", json=MARIA, headers=headers("k"))).json()
    monkeypatch.undo()
    retry = await client.post("/api/v1/customers", json=MARIA, headers=headers("k"))
    assert (await retry.json())["id"] == first["id"]
    clock.now += RESPONSE_TTL - timedelta(minutes=1)  # kept, no longer rebuilt
    again = await client.post("/api/v1/customers", json=MARIA, headers=headers("k"))
    assert again.status == 201 and (await again.json())["id"] == first["id"]


async def _die_after_insert(client: Any, key: str, body: dict[str, Any], clock: Clock) -> str:
    """What a process killed between the insert and `complete` leaves: a claim, and the
    customer stored under the claim's token."""
    from service.customers.model import new_customer
    from service.storage.base import Change

    repository = client.app[repository_key]
    principal_record = _record(client, key)
    claim = await repository.idempotency.claim(
        principal_record, _fingerprint(client, body), clock()
    )
    draft = new_customer({**body, "cpf": "".join(c for c in body["cpf"] if c.isdigit())})
    draft["id"] = claim.customer_id
    await repository.insert(draft, Change.of("create", "tester"))
    return claim.customer_id


def _record(client: Any, key: str) -> str:
    import json

    return record_id(json.dumps(["http://127.0.0.1:8080/local-issuer", "tester", []]), key)


def _fingerprint(client: Any, body: dict[str, Any]) -> str:
    from service.api.idempotency import canonical_json
    from service.typedefs import pii_codec_key

    return client.app[pii_codec_key].fingerprint(canonical_json(body))


@pytest.mark.parametrize("after", [timedelta(0), IN_FLIGHT_LEASE, timedelta(hours=23)])
async def test_a_claim_whose_owner_died_after_the_insert_answers_with_its_customer(
    api: Any, after: timedelta
) -> None:
    client, clock, headers = api
    body = {k: v for k, v in MARIA.items()}
    # the body the API parses: what the schema gives (no number: MARIA has one)
    customer_id = await _die_after_insert(client, "dead", body, clock)
    clock.now += after
    retry = await client.post("/api/v1/customers", json=MARIA, headers=headers("dead"))
    if retry.status == 409:  # our fingerprint differs from the handler's parse: say so
        pytest.fail("the test's fingerprint does not match the handler's")
    assert retry.status == 201, await retry.text()
    assert (await retry.json())["id"] == customer_id
    assert retry.headers["Idempotent-Replayed"] == "true"


async def test_a_claim_whose_owner_died_before_the_insert_is_taken_over_after_its_lease(
    api: Any,
) -> None:
    client, clock, headers = api
    repository = client.app[repository_key]
    await repository.idempotency.claim(
        _record(client, "gone"), _fingerprint(client, MARIA), clock()
    )
    blocked = await client.post("/api/v1/customers", json=MARIA, headers=headers("gone"))
    assert blocked.status == 409
    clock.now += IN_FLIGHT_LEASE
    taken = await client.post("/api/v1/customers", json=MARIA, headers=headers("gone"))
    assert taken.status == 201, await taken.text()
    assert await stored_ids(client, headers) == [(await taken.json())["id"]]


# which writes the disk refuses during one POST
FAILURES = [(), ("complete",), ("insert",), ("insert", "release"), ("complete", "release")]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(FAILURES)), max_size=12))
async def test_no_answer_is_5xx_while_its_customer_is_stored_and_retries_learn_the_id(
    api: Any, monkeypatch: Any, plan: list[tuple[int, tuple[str, ...]]]
) -> None:
    """Any sequence of POSTs (four keys, four bodies) with the store's writes failing at
    random: every 201 names a stored customer, a 5xx never leaves one behind unnamed, and
    one clean retry per key names exactly the stored customers."""
    client, clock, headers = api
    repository = client.app[repository_key]
    store = repository.idempotency
    run = next(_RUNS)
    created: dict[int, str] = {}

    async def ours(run: int) -> set[str]:
        found: set[str] = set()
        for index in range(4):
            query = {"email": f"h{run}-{index}@example.com"}
            page = await client.get("/api/v1/customers", params=query, headers=headers())
            found |= {c["id"] for c in (await page.json())["data"]}
        return found

    def body(index: int) -> dict[str, Any]:
        number = 400_000_000 + 17 * (run * 4 + index)
        return {**MARIA, "email": f"h{run}-{index}@example.com", "cpf": make_cpf(number)}

    for index, failure in plan:
        key = f"r{run}-{index}"
        with monkeypatch.context() as patch:
            for write in failure:
                patch.setattr(repository if write == "insert" else store, write, _refuse)
            response = await client.post(
                "/api/v1/customers", json=body(index), headers=headers(key)
            )
        assert response.status in (201, 409, 503), await response.text()
        if response.status == 503:  # then nothing may be stored under its claim
            assert await ours(run) == set(created.values())
        if response.status == 201:
            created.setdefault(index, (await response.json())["id"])
    answers = {}
    for index in {i for i, _ in plan}:
        clock.now += IN_FLIGHT_LEASE  # past any lease left behind
        retry = await client.post(
            "/api/v1/customers", json=body(index), headers=headers(f"r{run}-{index}")
        )
        assert retry.status == 201, await retry.text()
        answers[index] = (await retry.json())["id"]
    assert set(answers.values()) == await ours(run)  # every key names its stored customer
    assert len(set(answers.values())) == len(answers)  # one customer per key, never two
    assert all(answers[i] == created[i] for i in created)  # the first 201 is the answer


async def _refuse(*args: Any, **kwargs: Any) -> None:
    raise DatabaseUnavailable()


import itertools  # noqa: E402

_RUNS = itertools.count()
