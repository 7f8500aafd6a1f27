"""The customer's lifecycle (DESIGN.md "Lifecycle"): which action applies in which status.

A pure table, no I/O: the storage adapters apply a `Transition` atomically (a conditional
write: the status read is the status changed; `service.customers.model.transitioned` is the
record after it, erasure included), the HTTP edge maps the errors to 409.

    active --block--> blocked --unblock--> active
    active --close (DELETE)--> closed --reopen--> active
    active | blocked | closed --anonymize--> anonymized (final)

A blocked customer is frozen (LGPD "bloqueio": processing suspended, data kept): only
`unblock` and `anonymize` apply; anything else is `customer_blocked`. Any other action in
a status it does not start from is `invalid_status`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.customers.errors import CustomerError

ACTIVE = "active"
BLOCKED = "blocked"
CLOSED = "closed"
ANONYMIZED = "anonymized"
STATUSES = (ACTIVE, BLOCKED, CLOSED, ANONYMIZED)
# What a decision without `visible_statuses` lets a caller see.
DEFAULT_VISIBLE = frozenset({ACTIVE})
BLOCK_REASON_MAX_LENGTH = 500
# What the retention sweep writes in the audit trail as the actor.
RETENTION_ACTOR = "system:retention"


@dataclass(frozen=True)
class Transition:
    action: str  # the audit action (`close`, `block`, ...); its event: `Change.of`
    sources: frozenset[str]  # the statuses it applies in
    target: str

    def check(self, status: str) -> None:
        """Raise the domain error for applying this transition to a customer in `status`."""
        if status in self.sources:
            return
        if status == BLOCKED:
            raise CustomerBlocked(self.action)
        raise InvalidStatus(self.action, status)


def _transition(action: str, sources: set[str], target: str) -> Transition:
    return Transition(action, frozenset(sources), target)


BLOCK = _transition("block", {ACTIVE}, BLOCKED)
UNBLOCK = _transition("unblock", {BLOCKED}, ACTIVE)
CLOSE = _transition("close", {ACTIVE}, CLOSED)
REOPEN = _transition("reopen", {CLOSED}, ACTIVE)
ANONYMIZE = _transition("anonymize", {ACTIVE, BLOCKED, CLOSED}, ANONYMIZED)
# DELETE with `retention.closed_days: 0`: applies where close does, ends anonymized.
CLOSE_AND_ANONYMIZE = _transition("anonymize", {ACTIVE}, ANONYMIZED)
# The retention sweep: only closed customers past `purge_after`.
PURGE = _transition("anonymize", {CLOSED}, ANONYMIZED)
# The actions of `POST /customers/{id}/<action>`.
ACTIONS = {t.action: t for t in (BLOCK, UNBLOCK, REOPEN, ANONYMIZE)}
# A PATCH is a change like the others: only an active customer takes one.
UPDATE = _transition("update", {ACTIVE}, ACTIVE)


def lifecycle_fields(
    transition: Transition,
    current: Mapping[str, Any],
    at: datetime,
    *,
    closed_days: int,
    reason: str | None = None,
) -> dict[str, Any]:
    """The lifecycle fields `transition` sets at `at` on the stored customer `current`.

    A close sets `closed_at` and `purge_after`; a reopen clears them; an anonymization keeps
    those of the close before it (or, straight from active or blocked, ends the
    relationship now); `blocked_reason` lives only while blocked."""
    target = transition.target
    fields: dict[str, Any] = {"status": target}
    if target == BLOCKED or current.get("blocked_reason") is not None:
        fields["blocked_reason"] = reason if target == BLOCKED else None
    if target == CLOSED:
        fields |= {"closed_at": at, "purge_after": at + timedelta(days=closed_days)}
    elif target == ACTIVE:
        fields |= {"closed_at": None, "purge_after": None}
    elif target == ANONYMIZED:
        fields |= {
            "closed_at": current.get("closed_at") or at,
            "purge_after": current.get("purge_after") or at,
            "anonymized_at": at,
        }
    return fields


class LifecycleError(CustomerError):
    code = ""

    def __init__(self, action: str, detail: str) -> None:
        super().__init__(detail)
        self.action = action
        self.detail = detail


class CustomerBlocked(LifecycleError):
    """A change to a blocked customer (only unblock and anonymize apply)."""

    code = "customer_blocked"

    def __init__(self, action: str) -> None:
        super().__init__(
            action, f"The customer is blocked: `{action}` is not possible until it is unblocked."
        )


class InvalidStatus(LifecycleError):
    """An action in a status it does not apply to (unblock an active customer, ...)."""

    code = "invalid_status"

    def __init__(self, action: str, status: str) -> None:
        super().__init__(action, f"`{action}` does not apply to a customer in status {status}.")
        self.status = status
