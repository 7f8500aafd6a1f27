"""The hash chain as docs/audit.md tells an auditor to recompute it."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from service.audit.chain import GENESIS, broken_link, canonical, chained, new_entry

texts = st.text(max_size=40)


def documented_hash(entry: dict[str, Any]) -> str:
    """The few lines of docs/audit.md: every member but `hash`, keys sorted, no spaces,
    UTF-8 as it is; SHA-256, lower-case hex."""
    members = {key: value for key, value in entry.items() if key != "hash"}
    text = json.dumps(members, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@given(
    actor=texts,
    request_id=st.one_of(st.none(), texts),
    fields=st.lists(st.sampled_from(["name", "email", "phone", "cpf", "address"])),
    prev=st.sampled_from([GENESIS, "ab" * 32]),
)
def test_the_documented_recipe_recomputes_every_hash(
    actor: str, request_id: str | None, fields: list[str], prev: str
) -> None:
    entry = new_entry(
        action="read",
        actor=actor,
        customer_id="0" * 24,
        fields=fields,
        request_id=request_id,
        at=datetime(2026, 1, 1, 12, tzinfo=UTC),
    )
    linked = chained(entry, prev)
    assert linked["hash"] == documented_hash(linked)
    assert broken_link(linked, prev) is None
    assert broken_link(linked, "cd" * 32) is not None  # another predecessor
    assert broken_link({**linked, "actor": actor + "x"}, prev) is not None  # changed content
    assert canonical(linked).startswith(b'{"action":"read","actor":')


def test_times_are_utc_milliseconds_with_z() -> None:
    entry = new_entry(
        action="create",
        actor="a",
        customer_id="0" * 24,
        fields=(),
        request_id=None,
        at=datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC),
    )
    assert entry["at"] == "2026-01-01T12:00:00.123Z"
