"""A separate process that writes a burst of changes (create, update, close) to a SQLite
file and prints each acknowledged one: `ACTION ID`. Killed with -9 by the tests.

    python tests/events/burst.py URL KEYS OFFSET COUNT
"""

import asyncio
import os
import sys

from service.storage import open_repository
from service.storage.pii import Keyring, PiiCodec
from tests.factories import change, make_cpf


def acknowledge(action: str, customer_id: str) -> None:
    """One line in one write(2): a kill -9 leaves whole lines on the pipe, never half of one."""
    os.write(1, f"{action} {customer_id}\n".encode())


async def main(url: str, keys: str, offset: int, count: int) -> None:
    repository = open_repository(url, "customers", PiiCodec(Keyring.from_json(keys, "argv")))
    await repository.ensure_schema()
    try:
        for i in range(offset, offset + count):
            customer = {
                "name": f"Customer {i}",
                "email": f"c{i}@example.com",
                "phone": "+5511912345678",
                "cpf": make_cpf(100_000_000 + i),
                "address": {"cep": "01001000", "number": None, "complement": None},
            }
            stored = await repository.insert(customer, change("create", fields=tuple(customer)))
            acknowledge("create", stored["id"])
            if i % 2:
                await repository.update(
                    stored["id"], {"name": f"Renamed {i}"}, change("update", fields=("name",))
                )
                acknowledge("update", stored["id"])
            if i % 3 == 0:
                await repository.delete(stored["id"], change("close"))
                acknowledge("close", stored["id"])
    finally:
        await repository.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
