"""`python -m service pii status|new-key|rotate`: the keys CPFs are sealed with."""

from __future__ import annotations

import argparse
import asyncio
import sys

from service.errors import ServiceUnavailable
from service.settings import Settings
from service.storage import open_storage
from service.storage.admin import BATCH
from service.storage.pii import add_key, key_source, load_codec


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
        total = 0
        while resealed := await repository.reencrypt_pii(args.batch):
            total += resealed
            print(f"re-sealed {total} CPFs so far", file=sys.stderr)
        stale = sorted(await repository.pii_key_ids() - {codec.active_key_id})
        print(f"re-sealed {total} CPFs with key {codec.active_key_id}")
        if stale:
            print(
                f"CPFs sealed with {', '.join(stale)} remain: a server that does not know key "
                f"{codec.active_key_id} yet wrote them. Restart every server with this key "
                "document, then run `pii rotate` again.",
                file=sys.stderr,
            )
            return 1
        return 0
    finally:
        await repository.close()
