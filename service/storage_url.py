"""The storage URL schemes, in one table: the repository opener, the `storage.url` check of
the settings loader and the command line all read it (as encode/databases keeps one).

A leaf module (no imports from the service), so the settings can check a URL without
importing the storage adapters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Scheme:
    prefix: str
    adapter: Literal["sqlite", "mongo"]
    file: bool = False  # the rest of the URL is a file path (`db backup` copies it)
    in_memory: bool = False  # nothing survives the process


SCHEMES = (
    Scheme("sqlite:///", "sqlite", file=True),
    Scheme("mongomock://", "mongo", in_memory=True),
    Scheme("mongodb://", "mongo"),
    Scheme("mongodb+srv://", "mongo"),
)


def scheme_of(url: str) -> Scheme | None:
    """The scheme of `url`, or None for a URL no adapter serves (a file scheme needs a path)."""
    for scheme in SCHEMES:
        if url.startswith(scheme.prefix) and not (scheme.file and url == scheme.prefix):
            return scheme
    return None


def known_prefixes() -> str:
    """`sqlite:///, mongomock://, mongodb:// or mongodb+srv://`, for messages."""
    prefixes = [scheme.prefix for scheme in SCHEMES]
    return f"{', '.join(prefixes[:-1])} or {prefixes[-1]}"
