"""What a validator is, and what it may use.

A validator has a `name`, the `fields` it reads, options checked in `__init__` (every
option has a default, as in Django's AUTH_PASSWORD_VALIDATORS), and one async `validate`
that returns field errors and may return normalized or enriched values.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from service.errors import FieldError

if TYPE_CHECKING:
    from service.cep.base import Address


class CustomerLookup(Protocol):
    async def exists(self, field: str, value: str, *, exclude_id: str | None = None) -> bool: ...


class CepLookup(Protocol):
    async def resolve(self, cep: str) -> Address | None: ...


@dataclass(frozen=True)
class ValidationContext:
    """What validators may reach: the stored customers and the CEP resolver.

    `customer_id` and `current` (the stored record) are set when an existing customer is
    being changed (PATCH): uniqueness checks do not count the customer against itself, and
    a new street is checked against the stored CEP.
    """

    customers: CustomerLookup
    cep: CepLookup
    customer_id: str | None = None
    current: Mapping[str, Any] | None = None


@dataclass
class Outcome:
    errors: list[FieldError] = field(default_factory=list)
    # Values to store instead of (or besides) what the client sent: canonical forms, enrichment.
    updates: dict[str, Any] = field(default_factory=dict)


class Validator(ABC):
    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]
    # True for a check the storage makes anyway (a unique index): the pipeline runs it only
    # when the request fails for another reason, so the answer still lists it beside the
    # other errors; otherwise the write decides (and names every clashing field) without
    # the read.
    storage_decides: ClassVar[bool] = False

    @abstractmethod
    async def validate(self, values: Mapping[str, Any], context: ValidationContext) -> Outcome:
        """Check `values` (the customer as normalized by earlier validators)."""

    def error(self, code: str, message: str, field: str | None = None) -> Outcome:
        return Outcome(errors=[FieldError(field or self.fields[0], code, message)])
