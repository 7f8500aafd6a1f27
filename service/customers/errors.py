"""Domain errors about customers: plain exceptions, no HTTP in sight.

`service.api.problems` maps them to problem+json at the edge (one table).
"""

from __future__ import annotations

from collections.abc import Iterable

from service.errors import FieldError

ALREADY_EXISTS = "already_exists"


def already_exists(field: str) -> FieldError:
    """The one place the `already_exists` field error is built (pre-check and index alike)."""
    return FieldError(field, ALREADY_EXISTS, f"A customer with this {field} already exists.")


class CustomerError(Exception):
    """Base of the domain errors about customers."""


class DuplicateCustomer(CustomerError):
    """Another customer already has these unique values (`email`, `cpf`, or both)."""

    def __init__(self, fields: Iterable[str]) -> None:
        self.fields = tuple(fields)
        super().__init__(f"already taken: {', '.join(self.fields)}")

    def field_errors(self) -> list[FieldError]:
        return [already_exists(field) for field in self.fields]


class CustomerNotFound(CustomerError):
    """No customer has this id (or the id is malformed: nobody could have it)."""


class InvalidCursor(CustomerError):
    """A page cursor this API did not hand out (422 on `cursor`, as the query schema's)."""

    MESSAGE = "The `cursor` is not one this API handed out."

    def field_error(self) -> FieldError:
        return FieldError("cursor", "invalid", self.MESSAGE)
