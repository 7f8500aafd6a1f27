"""What an auditor and an operator ask of the trail: is the chain intact, and after an
incident, which customers did a given client see (LGPD art. 48)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from service.audit.chain import GENESIS, Entry, broken_link


@dataclass(frozen=True)
class Verdict:
    checked: int  # entries that matched, before the first that does not
    head: str = GENESIS  # the hash of the last entry that matched
    bad_entry: str | None = None  # the id of the first entry that does not match
    reason: str | None = None


async def verify(chain: AsyncIterator[Entry]) -> Verdict:
    """Recompute every link, oldest first; stop at the first entry that does not match."""
    checked, previous = 0, GENESIS
    async for entry in chain:
        reason = broken_link(entry, previous)
        if reason is not None:
            return Verdict(checked, previous, entry["id"], reason)
        checked, previous = checked + 1, entry["hash"]
    return Verdict(checked, previous)


PageOf = Callable[[str | None], Awaitable[Any]]  # cursor -> Page of entries, newest first


async def customers_seen(page_of: PageOf, since: str | None) -> list[dict[str, Any]]:
    """One line per customer in the entries of one actor at or after `since` (an entry `at`
    text, so comparing text compares time): when first and last, which actions, which
    fields in clear, how many entries. Ids and names of fields only."""
    seen: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        page = await page_of(cursor)
        for entry in page.items:
            if since is not None and entry["at"] < since:
                continue  # pages go by chain position; `at` may interleave a little
            line = seen.setdefault(
                entry["customer_id"],
                {
                    "customer_id": entry["customer_id"],
                    "first_at": entry["at"],
                    "last_at": entry["at"],
                    "actions": set(),
                    "fields": set(),
                    "entries": 0,
                },
            )
            line["first_at"] = min(line["first_at"], entry["at"])
            line["last_at"] = max(line["last_at"], entry["at"])
            line["actions"].add(entry["action"])
            line["fields"].update(entry["fields"])
            line["entries"] += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return [
        {**line, "actions": sorted(line["actions"]), "fields": sorted(line["fields"])}
        for line in sorted(seen.values(), key=lambda line: line["first_at"])
    ]
