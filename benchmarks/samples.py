"""Customers for the benchmarks to store: valid, distinct, shaped as the repository keeps them.

Imported by the benchmark scripts from their own folder (`python benchmarks/api.py` puts
`benchmarks/` first on the import path); benchmarks never import `tests`.
"""

from __future__ import annotations

from typing import Any

STORED_CEP = "01001000"  # in the offline directory


def cpf(number: int) -> str:
    """A valid CPF (check digits computed) from a 9-digit base number."""
    digits = [int(d) for d in f"{number:09d}"]
    for length in (9, 10):
        total = sum(d * (length + 1 - i) for i, d in enumerate(digits))
        digits.append(total * 10 % 11 % 10)
    return "".join(map(str, digits))


def customer(number: int) -> dict[str, Any]:
    """Customer `number` as the domain stores it, without id and timestamps."""
    return {
        "name": f"Customer {number}",
        "email": f"customer{number}@example.com",
        "phone": "+5511912345678",
        "cpf": cpf(100_000_000 + number),  # 000000000-00 and other repdigits are not CPFs
        "address": {
            "cep": STORED_CEP,
            "street": "Praça da Sé",
            "neighborhood": "Sé",
            "city": "São Paulo",
            "state": "SP",
            "number": str(number % 1000),
            "complement": None,
            "source": "offline",
        },
    }
