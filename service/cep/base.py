"""CEP types shared by providers and the resolver: the address, the provider protocol, errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Protocol

from service.errors import ServiceUnavailable

# "01001000", "01001-000" and the older dotted form "01.001-000"; ASCII digits only.
_CEP_RE = re.compile(r"([0-9]{2})\.?([0-9]{3})-?([0-9]{3})")


def normalize_cep(raw: str) -> str | None:
    """The 8 digits of a well-formed CEP, or None.

    Accepted: 8 bare digits, `NNNNN-NNN`, `NN.NNN-NNN` (also `NN.NNNNNN`), with surrounding
    whitespace. Anything else (letters, other separators, wrong length) is malformed.
    """
    match = _CEP_RE.fullmatch(raw.strip())
    return "".join(match.groups()) if match else None


@dataclass(frozen=True)
class Address:
    """What a CEP resolves to. `state` is the UF ("SP"); `source` names the provider."""

    cep: str
    street: str
    neighborhood: str
    city: str
    state: str
    source: str

    def as_dict(self) -> dict[str, str]:
        # Its fields are strings: a copy of them, not `asdict`'s recursive deep copy (~10x).
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Address:
        """Inverse of `as_dict`; raises ValueError on a missing or non-string field."""
        values: dict[str, str] = {}
        for f in fields(cls):
            value = data.get(f.name)
            if not isinstance(value, str):
                raise ValueError(f"address field {f.name!r} missing or not a string")
            values[f.name] = value
        return cls(**values)


# What a CEP adds to a customer's address besides the CEP itself.
ENRICHED_FIELDS = tuple(f.name for f in fields(Address) if f.name != "cep")


class ProviderError(Exception):
    """The provider could not answer: timeout, connection error, 5xx/429, unparsable body."""


class CepUnavailable(ServiceUnavailable):
    """No provider gave a definite answer (found, or authoritatively not found)."""

    default_detail = "The CEP service is unavailable; try again shortly."


class CepProvider(Protocol):
    """One source of CEP data.

    `lookup` gets a normalized CEP (8 digits) and returns the address, or None when this
    provider says the CEP does not exist; it raises ProviderError when it cannot tell.
    An `authoritative` provider's None is final; a non-authoritative one may simply lack it.
    """

    name: str
    authoritative: bool

    async def lookup(self, cep: str) -> Address | None: ...

    async def close(self) -> None:
        """Release what the provider owns (not the shared HTTP session)."""
