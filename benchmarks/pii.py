"""Cost of sealing the CPF: the codec alone, and a repository insert/get with it.

    .venv/bin/python benchmarks/pii.py [--runs 20000]

Prints microseconds per call (median of 5 rounds). The repository numbers are the SQLite
adapter's insert and get; the codec numbers are what encryption adds to each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from service.storage import open_repository
from service.storage.pii import Keyring, PiiCodec


def per_call_us(runs: int, call: Callable[[], object]) -> float:
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(runs):
            call()
        rounds.append((time.perf_counter() - started) / runs * 1e6)
    return statistics.median(rounds)


async def repository_us(runs: int) -> tuple[float, float]:
    codec = PiiCodec(Keyring.generate())
    with tempfile.TemporaryDirectory() as folder:
        repository = open_repository(f"sqlite:///{Path(folder) / 'c.db'}", "bench", codec)
        await repository.ensure_schema()
        ids = []
        started = time.perf_counter()
        for i in range(runs):
            stored = await repository.insert(
                {
                    "name": "C",
                    "email": f"c{i}@example.com",
                    "phone": "+5511912345678",
                    "cpf": f"{i:011d}",
                    "address": {"cep": "01001000"},
                }
            )
            ids.append(stored["id"])
        insert = (time.perf_counter() - started) / runs * 1e6
        started = time.perf_counter()
        for customer_id in ids:
            await repository.get(customer_id)
        get = (time.perf_counter() - started) / runs * 1e6
        await repository.close()
    return insert, get


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20000)
    runs = parser.parse_args().runs
    codec = PiiCodec(Keyring.generate())
    cpf = "52998224725"
    sealed = codec.encrypt_cpf(cpf)
    for label, call in (
        ("encrypt_cpf (AES-GCM + HMAC index)", lambda: codec.encrypt_cpf(cpf)),
        ("decrypt_cpf (AES-GCM)", lambda: codec.decrypt_cpf(sealed)),
        ("blind_index (HMAC-SHA256)", lambda: codec.blind_index(cpf)),
    ):
        print(f"{label:36} {per_call_us(runs, call):8.1f} µs")
    insert, get = asyncio.run(repository_us(min(runs, 2000)))
    print(f"{'SQLite insert (whole, fsync)':36} {insert:8.1f} µs")
    print(f"{'SQLite get by id (whole)':36} {get:8.1f} µs")


if __name__ == "__main__":
    main()
