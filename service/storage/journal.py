"""The journal: what every write records besides itself, in its own transaction.

`journal_rows` is the one place a `Change` becomes side rows; each adapter writes them with
the customer (SQLite: the same transaction; MongoDB: the same document's `_outbox`, then
drained). The audit entry is always there; the event (issue 17) when `event_type` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.audit.chain import Entry, new_entry
from service.events.model import Event, new_event
from service.storage.base import Change


@dataclass(frozen=True)
class JournalRows:
    audit: Entry  # not yet chained: the adapter links it to the chain's head
    event: Event | None  # None: this change announces no event (an export)


def journal_rows(change: Change, customer_id: str) -> JournalRows:
    audit = new_entry(
        action=change.action,
        actor=change.actor,
        customer_id=customer_id,
        fields=change.fields,
        request_id=change.request_id,
        at=change.at,
    )
    event = None
    if change.event_type is not None:
        event = new_event(change.event_type, customer_id, change.fields, change.at)
    return JournalRows(audit=audit, event=event)
