"""Disk full under POSTs with Idempotency-Key: how many answered 5xx while their customer
was stored (the goal is 0), and whether every key's retry names its stored customer.

    sudo python benchmarks/disk_full.py [--size-kib 8192] [--leave-kib 1500] [--requests 400]

The SQLite file lives on a small tmpfs mounted for the run (root only; where `mount` is
not permitted the script says so and exits 0 without measuring). A filler file leaves
only a little room, so inserts, audit entries, idempotency records and WAL growth hit
"database or disk is full" at every step of a request. Then the filler is removed and
every key is retried (a 409 "in progress", left by a claim the full disk would not release,
again after the one-minute lease): each must end in a 201, and no 5xx may have been
answered for a customer that was stored before its retry.
The server runs in this process (the real app and runner, CEP from the offline directory).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from samples import cpf

from service.app import create_app
from service.auth.local_issuer import issue_local_token
from service.settings import load_settings
from service.storage.idempotency import IN_FLIGHT_LEASE

SCOPES = ["customers:read", "customers:write", "customers:pii"]


class _Count(logging.Handler):
    """How often a message was logged (the path the run should exercise)."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message, self.seen = message, 0

    def emit(self, record: logging.LogRecord) -> None:
        self.seen += self.message in record.getMessage()


def body(number: int) -> dict[str, Any]:
    return {
        "name": f"Customer {number}",
        "email": f"full{number}@example.com",
        "phone": "(11) 91234-5678",
        "cep": "01001-000",
        "cpf": cpf(300_000_000 + number),
        "number": str(number),
    }


def mount_tmpfs(directory: Path, size_kib: int) -> bool:
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        print(f"skipped: cannot mount a tmpfs here ({result.stderr.strip() or 'not root'})")
        return False
    return True


def fill(directory: Path, leave_kib: int) -> Path:
    """A filler file taking all but `leave_kib` of the file system."""
    filler = directory / "filler"
    free = shutil.disk_usage(directory).free - leave_kib * 1024
    with open(filler, "wb") as file:
        file.truncate(0)
        chunk = b"\0" * (1 << 16)
        written = 0
        while written + len(chunk) <= free:
            file.write(chunk)
            written += len(chunk)
        file.flush()
        os.fsync(file.fileno())
    return filler


async def run(directory: Path, keys_dir: Path, requests: int, leave_kib: int) -> dict[str, int]:
    settings = load_settings(
        environ={},
        overrides={
            "storage": {"url": f"sqlite:///{directory / 'customers.db'}"},
            "cep": {"providers": ["offline"]},
            "auth": {"local_issuer": {"key_file": str(keys_dir / "issuer-key.pem")}},
            "pii": {"key_file": str(keys_dir / "pii-key")},
        },
    )
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}/api/v1/customers"
    # one caller per 500 keys: a caller holds at most MAX_LIVE_KEYS live records
    tokens = [
        issue_local_token(settings, f"disk-full-{n}", SCOPES, [], 3600)
        for n in range(requests // 500 + 1)
    ]
    auth = {"Authorization": f"Bearer {tokens[0]}"}

    def caller(number: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[number // 500]}"}

    counts = {"requests": requests, "201": 0, "5xx": 0, "other": 0}
    kept_failed = _Count("an idempotent answer could not be kept")
    logging.getLogger("service.api.idempotency").addHandler(kept_failed)
    first: dict[int, int] = {}
    filler = fill(directory, leave_kib)
    try:
        async with aiohttp.ClientSession() as session:
            for number in range(requests):
                headers = {**caller(number), "Idempotency-Key": f"key-{number}"}
                async with session.post(base, json=body(number), headers=headers) as response:
                    first[number] = response.status
                    kind = (
                        "201"
                        if response.status == 201
                        else "5xx"
                        if response.status >= 500
                        else "other"
                    )
                    counts[kind] += 1
            filler.unlink()  # room again: every key is retried once
            stored_before_retry = await _stored_emails(session, base, auth)
            counts["5xx_while_stored"] = sum(
                1
                for number, status in first.items()
                if status >= 500 and body(number)["email"] in stored_before_retry
            )
            retry_ok, waiting = 0, []
            for number in range(requests):
                headers = {**caller(number), "Idempotency-Key": f"key-{number}"}
                async with session.post(base, json=body(number), headers=headers) as response:
                    retry_ok += response.status == 201
                    if response.status == 409:  # a claim whose release the full disk refused
                        waiting.append(number)
            counts["retries_409_in_flight"] = len(waiting)
            if waiting:  # such a claim is taken over once its lease ends
                await asyncio.sleep(IN_FLIGHT_LEASE.total_seconds() + 1)
            for number in waiting:
                headers = {**caller(number), "Idempotency-Key": f"key-{number}"}
                async with session.post(base, json=body(number), headers=headers) as response:
                    retry_ok += response.status == 201
            stored_after = await _stored_emails(session, base, auth)
            counts["retries_201"] = retry_ok
            counts["stored_after_retries"] = len(stored_after)
            counts["stored_before_retries"] = len(stored_before_retry)
            counts["stored_but_answer_not_kept"] = kept_failed.seen
    finally:
        with contextlib.suppress(FileNotFoundError):
            filler.unlink()
        await runner.cleanup()
    return counts


async def _stored_emails(
    session: aiohttp.ClientSession, base: str, auth: dict[str, str]
) -> set[str]:
    emails: set[str] = set()
    cursor = None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        async with session.get(base, params=params, headers=auth) as response:
            page = await response.json()
        emails |= {customer["email"] for customer in page["data"]}
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return emails


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-kib", type=int, default=8192, help="tmpfs size")
    parser.add_argument("--leave-kib", type=int, default=1500, help="room left after the filler")
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="disk-full-") as tmp:
        mountpoint, keys = Path(tmp, "db"), Path(tmp, "keys")
        mountpoint.mkdir()
        keys.mkdir()
        if not mount_tmpfs(mountpoint, args.size_kib):
            return 0
        try:
            counts = asyncio.run(run(mountpoint, keys, args.requests, args.leave_kib))
        finally:
            subprocess.run(["umount", str(mountpoint)], check=False)
    for name, value in counts.items():
        print(f"{name:>24}: {value}")
    verdict = counts["5xx_while_stored"] == 0 and counts["retries_201"] == counts["requests"]
    print("ok: no 5xx about a stored customer" if verdict else "NOT OK")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
