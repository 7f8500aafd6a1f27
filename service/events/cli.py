"""`python -m service events replay|dead-letters`: operate the webhook deliveries."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from service.errors import ServiceUnavailable
from service.settings import Settings
from service.storage import open_storage


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not an ISO 8601 time (2026-01-01T00:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_events_commands(events: argparse.ArgumentParser) -> None:
    commands = events.add_subparsers(dest="events_command", required=True)
    replay = commands.add_parser(
        "replay", help="owe an endpoint again every kept event since a time (dead letters too)"
    )
    replay.add_argument("--endpoint", required=True, help="the name of an events.webhooks entry")
    replay.add_argument(
        "--since", required=True, type=_moment, help="ISO 8601 time (UTC when no offset)"
    )
    commands.add_parser("status", help="per endpoint: deliveries owed, dead letters, oldest owed")


def run_events_command(settings: Settings, args: argparse.Namespace) -> int:
    hooks = {hook.name: hook for hook in settings.events.webhooks}
    if args.events_command == "replay" and args.endpoint not in hooks:
        known = ", ".join(sorted(hooks)) or "none configured"
        print(f"error: --endpoint {args.endpoint!r}: no such webhook ({known})", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(settings, args))
    except ServiceUnavailable as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    repository, _ = await open_storage(settings)
    try:
        store = repository.events
        if args.events_command == "replay":
            hook = next(h for h in settings.events.webhooks if h.name == args.endpoint)
            await store.start_endpoint(hook.name)
            owed = await store.replay(hook.name, hook.types, since=args.since)
            print(f"{owed} event(s) owed again to {hook.name}; the running relay sends them")
            return 0
        for hook in settings.events.webhooks:
            stats = await store.stats(hook.name)
            oldest = stats.oldest_pending.isoformat() if stats.oldest_pending else "-"
            print(f"{hook.name}\tpending {stats.pending}\tdead {stats.dead}\toldest {oldest}")
        return 0
    finally:
        await repository.close()
