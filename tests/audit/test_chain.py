"""The hash chain as docs/audit.md tells an auditor to recompute it."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from service.audit.chain import (
    GENESIS,
    broken_link,
    canonical,
    chained,
    new_entry,
    timestamp,
)
from service.timetext import millisecond_texts

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


@given(st.lists(st.integers(min_value=0, max_value=4_102_444_800_000), min_size=1, max_size=50))
def test_read_stamps_are_the_entry_timestamp_of_the_same_millisecond(millis: list[int]) -> None:
    """The buffered reads keep `time.time()` and format it with `millisecond_texts` at the
    flush, the date part once per second: the same text `timestamp` gives that moment."""
    stamp = millisecond_texts("Z")
    for milli in sorted(millis) + millis:  # in order (the cached second reused) and not
        moment = datetime.fromtimestamp(milli / 1000, UTC)
        assert stamp(milli / 1000 + 0.0004) == timestamp(moment)


def test_forked_workers_hand_out_distinct_entry_ids() -> None:
    """`serve --workers N` forks: each child must not repeat the parent's (or a sibling's)
    ids, or the unique index refuses the entry and the change with it."""
    import os

    from service.audit import chain

    read_end, write_end = os.pipe()
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # the child: report a few ids, leave at once
            os.close(read_end)
            os.write(write_end, ("".join(chain._entry_id() for _ in range(5)) + "\n").encode())
            os._exit(0)
        children.append(pid)
    os.close(write_end)
    for pid in children:
        os.waitpid(pid, 0)
    with os.fdopen(read_end) as reports:
        text = reports.read()
    ids = [line[i : i + 24] for line in text.split() for i in range(0, len(line), 24)]
    ids += [chain._entry_id() for _ in range(5)]
    assert len(ids) == 15 and len(set(ids)) == 15
