"""Hide the fields a policy decision names (`Decision.masked_fields`) in a customer.

Masks show just enough to recognise a record on a support call, nothing that identifies it:
- cpf "52998224725" -> "***.982.247-**" (the middle six digits, in the usual CPF layout);
- phone "+5511912345678" -> "*********5678" (one `*` per hidden digit, then the last four);
- any other named field -> "***";
- `*` (WHOLE_RECORD) -> nothing but the id: a caller that may not read sees no record.
A value that does not look as expected is masked completely; None stays None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FULL_MASK = "***"
WHOLE_RECORD = "*"


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def mask_cpf(value: str) -> str:
    digits = _digits(value)
    if len(digits) != 11:
        return FULL_MASK
    return f"***.{digits[3:6]}.{digits[6:9]}-**"


def mask_phone(value: str) -> str:
    digits = _digits(value)
    if len(digits) < 8:  # too short: the last four digits would be most of the number
        return FULL_MASK
    return "*" * (len(digits) - 4) + digits[-4:]


_MASKERS: dict[str, Callable[[str], str]] = {"cpf": mask_cpf, "phone": mask_phone}


def mask_customer(customer: dict[str, Any], masked_fields: frozenset[str]) -> dict[str, Any]:
    """A shallow copy of `customer` with each field in `masked_fields` (top-level keys) masked."""
    if WHOLE_RECORD in masked_fields:
        return {"id": customer["id"]}
    masked = dict(customer)
    for name in masked_fields:
        value = masked.get(name)
        if value is None:
            continue
        masker = _MASKERS.get(name)
        masked[name] = masker(value) if masker and isinstance(value, str) else FULL_MASK
    return masked
