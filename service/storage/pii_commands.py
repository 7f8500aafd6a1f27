"""`python -m service pii status|new-key|rotate`: the keys CPFs are sealed with."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from service.errors import ServiceUnavailable
from service.settings import Settings
from service.storage import open_storage
from service.storage.admin import BATCH
from service.storage.pii import KEY_RELOAD_COOLDOWN_S, add_key, key_source, load_codec


def add_pii_commands(pii: argparse.ArgumentParser) -> None:
    commands = pii.add_subparsers(dest="pii_command", required=True)
    commands.add_parser("status", help="the active key, the configured and the used key ids")
    commands.add_parser(
        "new-key", help="add a key and make it the active one (file: in place; env: printed)"
    )
    rotate = commands.add_parser(
        "rotate", help="re-seal every CPF with the active key (resumable, safe while serving)"
    )
    rotate.add_argument("--batch", type=int, default=BATCH, help="CPFs per transaction")
    rotate.add_argument(
        "--servers-restarted",
        action="store_true",
        help="keys from an env var: every server was restarted with the new document",
    )


def run_pii_command(settings: Settings, args: argparse.Namespace) -> int:
    source, path = key_source(settings)
    if args.pii_command == "new-key":
        if path is None:  # the keys live in an env var: print the document to put there
            print(load_codec(settings).keyring.with_new_key().to_json(), end="")
            print(f"store this document in {source}, then restart the servers", file=sys.stderr)
            return 0
        keyring = add_key(settings)
        print(f"{path}: key {keyring.active} added and active. Back this file up now.")
        return 0
    try:
        return asyncio.run(_run_pii_on_repository(settings, args, source))
    except ServiceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


async def _run_pii_on_repository(settings: Settings, args: argparse.Namespace, source: str) -> int:
    repository, codec = await open_storage(settings)
    try:
        if args.pii_command == "status":
            print(f"keys: {source}")
            print(f"active key: {codec.active_key_id}")
            print(f"configured key ids: {', '.join(sorted(codec.key_ids))}")
            print(f"key ids in use: {', '.join(sorted(await repository.pii_key_ids())) or '-'}")
            return 0
        refusal = _rotation_refusal(settings, args)
        if refusal:
            print(f"error: {refusal}", file=sys.stderr)
            return 1
        total = 0
        while resealed := await repository.reencrypt_pii(args.batch):
            total += resealed
            print(f"re-sealed {total} CPFs so far", file=sys.stderr)
        stale = sorted(await repository.pii_key_ids() - {codec.active_key_id})
        print(f"re-sealed {total} CPFs with key {codec.active_key_id}")
        if stale:
            print(
                f"CPFs sealed with {', '.join(stale)} remain: a server that had not re-read "
                f"the key document yet (it does on the first CPF sealed with key "
                f"{codec.active_key_id}) wrote them. Run `pii rotate` again.",
                file=sys.stderr,
            )
            return 1
        return 0
    finally:
        await repository.close()


def _rotation_refusal(settings: Settings, args: argparse.Namespace) -> str | None:
    """Why `pii rotate` must not start yet: a running server re-reads the key document on
    the first CPF sealed with a key it lacks, but at most every KEY_RELOAD_COOLDOWN_S; once
    the document is that old, every server can learn the new key the moment it needs it."""
    source, path = key_source(settings)
    if path is None:
        if args.servers_restarted:
            return None
        return (
            f"the keys come from {source}, which a running server cannot re-read: restart "
            "every server with the new document, then run `pii rotate --servers-restarted`"
        )
    age = time.time() - path.stat().st_mtime
    if age < KEY_RELOAD_COOLDOWN_S:
        wait = KEY_RELOAD_COOLDOWN_S - age
        return (
            f"{path} changed {age:.0f} s ago; running servers re-read it at most every "
            f"{KEY_RELOAD_COOLDOWN_S:.0f} s: run `pii rotate` again in {wait:.0f} s"
        )
    return None
