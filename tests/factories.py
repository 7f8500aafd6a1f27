"""Test data that is valid by construction."""

from service.storage.base import Change


def make_cpf(base: int) -> str:
    """A valid CPF (check digits per the Receita Federal rule) from a 9-digit base."""
    digits = [int(d) for d in f"{base:09d}"]
    for length in (9, 10):
        total = sum(d * w for d, w in zip(digits, range(length + 1, 1, -1), strict=True))
        digits.append(0 if total % 11 < 2 else 11 - total % 11)
    return "".join(map(str, digits))


def change(action: str = "create", actor: str = "tester", fields: tuple[str, ...] = ()) -> Change:
    """The journal of a write a test makes (who and what, never values)."""
    return Change.of(action, actor, request_id="test-request", fields=fields)
