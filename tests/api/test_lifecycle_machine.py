"""A state machine (hypothesis) drives random lifecycles through the HTTP API, on SQLite and
on the MongoDB adapter (mongomock), by callers with different scopes, and checks after every
step: what each caller sees (by id, in pages, in filters), uniqueness, erased values gone,
statuses legal."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from service.app import create_app
from service.auth.local_issuer import issue_local_token
from service.customers import lifecycle
from service.customers.lifecycle import ACTIVE, ANONYMIZED, STATUSES, LifecycleError, Transition
from service.settings import load_settings
from tests.factories import make_cpf

PEOPLE = [
    {"name": f"Pessoa {n}", "email": f"p{n}@example.com", "cpf": make_cpf(100_000_000 + 7919 * n)}
    for n in range(4)
]
ERASED = ("name", "email", "phone", "cpf")
# Who calls, with what (DESIGN.md: `visible_statuses` is ["active"] without restricted).
CALLERS: dict[str, tuple[list[str], list[str]]] = {
    "writer": (["customers:read", "customers:write"], []),
    "editor": (["customers:read", "customers:write", "customers:restricted"], []),
    "reader": (["customers:read", "customers:pii"], []),
    "dpo": ([], ["dpo"]),
    "agent": (
        ["customers:read", "customers:lifecycle", "customers:anonymize", "customers:delete"],
        [],
    ),
}
SEES_ALL = {"editor", "dpo"}


def expected_outcome(transition: Transition, status: str) -> tuple[int, str | None]:
    try:
        transition.check(status)
    except LifecycleError as refused:
        return 409, refused.code
    return 200, None


class LifecycleMachine(RuleBasedStateMachine):
    storage_url: Callable[[Path], str] = staticmethod(lambda tmp: f"sqlite:///{tmp / 'c.db'}")

    customers = Bundle("customers")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="lifecycle-machine-"))
        self.loop = asyncio.new_event_loop()
        app_settings = load_settings(
            environ={},
            overrides={
                "storage": {"url": self.storage_url(self.tmp), "database": "machine"},
                "cep": {"providers": ["offline"]},
                "auth": {"local_issuer": {"key_file": str(self.tmp / "issuer.pem")}},
                "pii": {"key_file": str(self.tmp / "pii-key")},
            },
        )
        self.client: TestClient[Any, Any] = self.run(self.start(app_settings))
        self.headers = {
            name: {
                "Authorization": "Bearer "
                + issue_local_token(app_settings, name, scopes, roles, 3600)
            }
            for name, (scopes, roles) in CALLERS.items()
        }
        self.status: dict[str, str] = {}  # id -> status
        self.person: dict[str, int] = {}  # id -> index in PEOPLE

    @staticmethod
    async def start(app_settings: Any) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(app_settings)))
        await client.start_server()
        return client

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.client.close())
        self.loop.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def call(self, method: str, path: str, caller: str, **kw: Any) -> tuple[int, Any]:
        async def send() -> tuple[int, Any]:
            response = await self.client.request(method, path, headers=self.headers[caller], **kw)
            body = await response.json() if response.content_length else None
            return response.status, body

        result: tuple[int, Any] = self.run(send())
        return result

    def holder(self, person: int) -> str | None:
        """The customer holding this person's email and CPF (an anonymized one holds none)."""
        held = [i for i, p in self.person.items() if p == person and self.status[i] != ANONYMIZED]
        assert len(held) <= 1
        return held[0] if held else None

    # --- rules ---

    @initialize(target=customers, person=st.integers(0, len(PEOPLE) - 1))
    def first(self, person: int) -> str:
        return self._register(person)

    @rule(target=customers, person=st.integers(0, len(PEOPLE) - 1))
    def register(self, person: int) -> str:
        return self._register(person)

    def _register(self, person: int) -> str:
        body = {**PEOPLE[person], "phone": "(11) 91234-5678", "cep": "01001-000"}
        status, answer = self.call("POST", "/api/v1/customers", "writer", json=body)
        if self.holder(person) is not None:
            assert status == 422, answer
            assert {e["code"] for e in answer["errors"]} == {"already_exists"}
            return self.holder(person) or ""
        assert status == 201, answer
        self.status[answer["id"]] = ACTIVE
        self.person[answer["id"]] = person
        return str(answer["id"])

    @rule(customer=customers, caller=st.sampled_from(["writer", "editor"]), n=st.integers(0, 9))
    def patch(self, customer: str, caller: str, n: int) -> None:
        status, answer = self.call(
            "PATCH", f"/api/v1/customers/{customer}", caller, json={"name": f"Nome {n}"}
        )
        current = self.status[customer]
        if caller not in SEES_ALL and current != ACTIVE:
            assert status == 404, answer
            return
        expected = expected_outcome(lifecycle.UPDATE, current)
        assert (status, answer.get("code")) == expected, answer

    @rule(
        customer=customers,
        action=st.sampled_from(["block", "unblock", "reopen", "anonymize", "close"]),
        caller=st.sampled_from(["dpo", "agent"]),
        reason=st.none()
        | st.text(st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=20),
    )
    def act(self, customer: str, action: str, caller: str, reason: str | None) -> None:
        url = f"/api/v1/customers/{customer}"
        if action == "close":
            transition = lifecycle.CLOSE
            status, answer = self.call("DELETE", url, caller)
        else:
            transition = lifecycle.ACTIONS[action]
            body = {"json": {"reason": reason}} if action == "block" and reason else {}
            status, answer = self.call("POST", f"{url}/{action}", caller, **body)
        current = self.status[customer]
        if caller not in SEES_ALL and current != ACTIVE:
            assert status == 404, answer
            return
        code, problem = expected_outcome(transition, current)
        if code == 409:
            assert (status, answer["code"]) == (409, problem), answer
            return
        assert status == (204 if action == "close" else 200), answer
        self.status[customer] = transition.target
        if action == "block" and reason:
            assert answer["blocked_reason"] == reason

    # --- what must hold after every step ---

    def listed(self, caller: str, **query: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        cursor = None
        while True:
            params = {"limit": "7", **query, **({"cursor": cursor} if cursor else {})}
            status, page = self.call("GET", "/api/v1/customers", caller, params=params)
            assert status == 200, page
            seen |= {c["id"]: c for c in page["data"]}
            if not page["has_more"]:
                return seen
            cursor = page["next_cursor"]

    @invariant()
    def each_caller_sees_exactly_its_statuses(self) -> None:
        everyone = self.listed("dpo")
        assert {i: c["status"] for i, c in everyone.items()} == self.status
        assert set(self.listed("reader")) == {i for i, s in self.status.items() if s == ACTIVE}
        for customer_id, status in self.status.items():
            shown, _ = self.call("GET", f"/api/v1/customers/{customer_id}", "reader")
            assert shown == (200 if status == ACTIVE else 404)

    @invariant()
    def filters_answer_only_for_what_the_caller_sees(self) -> None:
        for index, person in enumerate(PEOPLE):
            holder = self.holder(index)
            for caller in ("dpo", "reader"):
                found = set(self.listed(caller, cpf=person["cpf"]))
                visible = holder is not None and (caller == "dpo" or self.status[holder] == ACTIVE)
                assert found == ({holder} if visible else set()), (caller, person)

    @invariant()
    def statuses_are_legal_and_erased_values_are_gone(self) -> None:
        everyone = self.listed("dpo")
        held: list[tuple[str, str]] = []
        for customer in everyone.values():
            assert customer["status"] in STATUSES
            if customer["status"] == ANONYMIZED:
                assert all(customer[field] is None for field in ERASED), customer
                assert customer["address"]["cep"] is None
                assert customer["address"]["street"] is None
                assert customer["anonymized_at"] and customer["closed_at"]
                flat = repr(customer)
                assert not any(p["cpf"] in flat or p["email"] in flat for p in PEOPLE)
            else:
                held += [("email", customer["email"]), ("cpf", customer["cpf"])]
        assert len(held) == len(set(held))  # unique across active, blocked and closed


class MongoLifecycleMachine(LifecycleMachine):
    storage_url = staticmethod(lambda tmp: "mongomock://")


MACHINE_SETTINGS = settings(
    max_examples=12,
    stateful_step_count=14,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize(
    "machine", [LifecycleMachine, MongoLifecycleMachine], ids=["sqlite", "mongomock"]
)
def test_random_lifecycles_keep_every_promise(machine: type[LifecycleMachine]) -> None:
    run_state_machine_as_test(machine, settings=MACHINE_SETTINGS)
