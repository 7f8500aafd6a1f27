"""A separate process that inserts customers into a SQLite file and reports each outcome.

    python tests/storage/burst.py URL KEYS COUNT

KEYS is a PII key document (JSON), as in the env var `CUSTOMERS_PII_KEYS`.

Customer i has email c{i}@example.com and CPF i, so two bursts on one file clash on every
customer. One line per insert, flushed as soon as it is acknowledged: `ok ID` or `dup`.
"""

import asyncio
import sys

from service.customers.errors import DuplicateCustomer
from service.storage import open_repository
from service.storage.pii import Keyring, PiiCodec
from tests.factories import change


async def main(url: str, keys: str, count: int) -> None:
    repository = open_repository(url, "customers", PiiCodec(Keyring.from_json(keys, "argv")))
    await repository.ensure_schema()
    try:
        for i in range(count):
            customer = {
                "name": f"Customer {i}",
                "email": f"c{i}@example.com",
                "phone": "+5511912345678",
                "cpf": f"{i:011d}",
                "address": {"cep": "01001000", "number": None, "complement": None},
            }
            try:
                stored = await repository.insert(customer, change("create"))
                print("ok", stored["id"], flush=True)
            except DuplicateCustomer:
                print("dup", flush=True)
    finally:
        await repository.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
