"""Files that hold secrets (the local issuer's key, the PII keys): mode 0600 from the first
byte, never visible half-written, never clobbering a file another process just created."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def _write_temp(path: Path, content: bytes) -> Path:
    """`content` in a private (0600), fsynced temp file beside `path`."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    return tmp


def create_private_file(path: Path, content: bytes) -> None:
    """Create `path` with `content` unless it exists: the temp file is hard-linked into
    place, and the link fails if another process created `path` meanwhile (its file wins)."""
    tmp = _write_temp(path, content)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def replace_private_file(path: Path, content: bytes) -> None:
    """Replace `path` atomically: readers see the old file or the new one, nothing between."""
    tmp = _write_temp(path, content)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def open_private(path: Path | str, *, overwrite: bool = False) -> int:
    """A file descriptor for writing personal data (exports, backups): 0600 from the first
    byte. A new file unless `overwrite`, which truncates an existing one (not through a
    symlink) and takes its group/other bits away."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC | os.O_NOFOLLOW if overwrite else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def make_private_database(path: Path) -> None:
    """Before SQLite opens `path`: create it 0600 when missing (SQLite gives its -wal and
    -shm files the database file's mode), and take group/other bits from files made before."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except FileNotFoundError:
            continue
