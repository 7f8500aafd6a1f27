"""The lifecycle table: which action applies in which status, and what it sets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.customers import lifecycle
from service.customers.lifecycle import (
    ACTIVE,
    ANONYMIZED,
    BLOCKED,
    CLOSED,
    STATUSES,
    CustomerBlocked,
    InvalidStatus,
    LifecycleError,
    Transition,
    lifecycle_fields,
)
from service.storage.base import EVENT_TYPES

AT = datetime(2026, 1, 1, 12, tzinfo=UTC)
TRANSITIONS = [
    lifecycle.BLOCK,
    lifecycle.UNBLOCK,
    lifecycle.CLOSE,
    lifecycle.REOPEN,
    lifecycle.ANONYMIZE,
    lifecycle.CLOSE_AND_ANONYMIZE,
    lifecycle.PURGE,
    lifecycle.UPDATE,
]
# (transition, status) -> the target, or the error; every pair is listed.
EXPECTED: dict[tuple[str, str], str | type[LifecycleError]] = {
    ("block", ACTIVE): BLOCKED,
    ("block", BLOCKED): CustomerBlocked,
    ("block", CLOSED): InvalidStatus,
    ("block", ANONYMIZED): InvalidStatus,
    ("unblock", ACTIVE): InvalidStatus,
    ("unblock", BLOCKED): ACTIVE,
    ("unblock", CLOSED): InvalidStatus,
    ("unblock", ANONYMIZED): InvalidStatus,
    ("close", ACTIVE): CLOSED,
    ("close", BLOCKED): CustomerBlocked,
    ("close", CLOSED): InvalidStatus,
    ("close", ANONYMIZED): InvalidStatus,
    ("reopen", ACTIVE): InvalidStatus,
    ("reopen", BLOCKED): CustomerBlocked,
    ("reopen", CLOSED): ACTIVE,
    ("reopen", ANONYMIZED): InvalidStatus,
    ("anonymize", ACTIVE): ANONYMIZED,
    ("anonymize", BLOCKED): ANONYMIZED,
    ("anonymize", CLOSED): ANONYMIZED,
    ("anonymize", ANONYMIZED): InvalidStatus,
    ("update", ACTIVE): ACTIVE,
    ("update", BLOCKED): CustomerBlocked,
    ("update", CLOSED): InvalidStatus,
    ("update", ANONYMIZED): InvalidStatus,
}


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize(
    "transition",
    list(lifecycle.ACTIONS.values()) + [lifecycle.CLOSE, lifecycle.UPDATE],
    ids=lambda t: t.action,
)
def test_every_action_in_every_status(transition: Transition, status: str) -> None:
    expected = EXPECTED[(transition.action, status)]
    if isinstance(expected, str):
        transition.check(status)
        assert transition.target == expected
    else:
        with pytest.raises(expected) as raised:
            transition.check(status)
        assert raised.value.action == transition.action
        assert raised.value.code in ("customer_blocked", "invalid_status")


def test_the_sweep_and_an_immediate_delete_apply_where_they_should() -> None:
    assert lifecycle.PURGE.sources == {CLOSED}
    assert lifecycle.CLOSE_AND_ANONYMIZE.sources == lifecycle.CLOSE.sources
    assert {t.target for t in (lifecycle.PURGE, lifecycle.CLOSE_AND_ANONYMIZE)} == {ANONYMIZED}


def test_anonymized_is_final() -> None:
    assert all(ANONYMIZED not in t.sources for t in TRANSITIONS)


def test_every_action_announces_its_event() -> None:
    for transition in TRANSITIONS:
        assert transition.action in EVENT_TYPES
    assert {EVENT_TYPES[t.action] for t in lifecycle.ACTIONS.values()} == {
        "customer.blocked",
        "customer.unblocked",
        "customer.reopened",
        "customer.anonymized",
    }
    assert EVENT_TYPES[lifecycle.CLOSE.action] == "customer.closed"


def test_close_sets_the_retention_deadline_and_reopen_clears_it() -> None:
    closed = lifecycle_fields(lifecycle.CLOSE, {}, AT, closed_days=3653)
    assert closed == {
        "status": CLOSED,
        "closed_at": AT,
        "purge_after": AT + timedelta(days=3653),
    }
    reopened = lifecycle_fields(lifecycle.REOPEN, closed, AT, closed_days=3653)
    assert reopened == {
        "status": ACTIVE,
        "closed_at": None,
        "purge_after": None,
    }


def test_block_keeps_its_reason_and_unblock_drops_it() -> None:
    blocked = lifecycle_fields(lifecycle.BLOCK, {}, AT, closed_days=1, reason="fraud review")
    assert blocked == {"status": BLOCKED, "blocked_reason": "fraud review"}
    unblocked = lifecycle_fields(lifecycle.UNBLOCK, blocked, AT, closed_days=1)
    assert unblocked["blocked_reason"] is None


@given(days=st.integers(0, 40000), later=st.timedeltas(timedelta(0), timedelta(days=9000)))
def test_anonymizing_a_closed_customer_keeps_when_it_was_closed(
    days: int, later: timedelta
) -> None:
    closed = lifecycle_fields(lifecycle.CLOSE, {}, AT, closed_days=days)
    anonymized = lifecycle_fields(lifecycle.PURGE, closed, AT + later, closed_days=days)
    assert anonymized["closed_at"] == AT
    assert anonymized["purge_after"] == AT + timedelta(days=days)
    assert anonymized["anonymized_at"] == AT + later


def test_anonymizing_straight_from_active_ends_the_relationship_now() -> None:
    fields = lifecycle_fields(lifecycle.ANONYMIZE, {}, AT, closed_days=3653)
    assert fields["closed_at"] == fields["purge_after"] == fields["anonymized_at"] == AT
    assert fields["status"] == ANONYMIZED
