"""What each stage of an authenticated request costs, measured in-process, one at a time.

    .venv/bin/python benchmarks/stages.py [--seconds 0.5] [--stored 10000]

Builds the pieces the app builds (same settings, same public factories) on a temporary
SQLite file holding `--stored` customers, then calls each stage in a loop for `--seconds`
and prints a Markdown table: calls/s, median and p99 in microseconds. The stages add up
(roughly) to the server's work per request, minus aiohttp itself (see benchmarks/api.py).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from service.api.render import json_response
from service.api.schemas import CustomerCreateSchema
from service.auth.jwt import build_token_verifier
from service.auth.local_issuer import issue_local_token
from service.authz import build_policy_engine
from service.authz.decision import policy_input
from service.authz.masking import mask_customer
from service.breaker import Breakers
from service.cep.resolver import build_cep_resolver
from service.customers.model import new_customer, now
from service.customers.view import public_view
from service.settings import load_settings
from service.storage import open_storage
from service.storage.base import Change, new_id
from service.validation.base import ValidationContext
from service.validation.pipeline import load_validators

SCOPES = ["customers:read", "customers:write", "customers:pii"]
BODY = {
    "name": "Maria da Silva",
    "email": "Maria.Silva@Example.com",
    "phone": "(11) 91234-5678",
    "cep": "01001-000",
    "cpf": "529.982.247-25",
    "number": "100",
}
PATH = "/api/v1/customers"
ITEM_ROUTE = f"{PATH}/{{customer_id}}"
ROW = "| {:<44} | {:>9,.0f} | {:>9.1f} | {:>9.1f} |"


async def timed(name: str, seconds: float, call: Callable[[int], Awaitable[object]]) -> None:
    samples: list[int] = []
    deadline = time.perf_counter() + seconds
    counter = itertools.count()
    while time.perf_counter() < deadline:
        i = next(counter)
        started = time.perf_counter_ns()
        await call(i)
        samples.append(time.perf_counter_ns() - started)
    samples.sort()
    median = samples[len(samples) // 2] / 1000
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000
    print(ROW.format(name, 1e9 / (sum(samples) / len(samples)), median, p99), flush=True)


def sync(call: Callable[[int], object]) -> Callable[[int], Awaitable[object]]:
    async def run(i: int) -> object:
        return call(i)

    return run


async def main(seconds: float, stored: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            environ={},
            overrides={
                "storage": {"url": f"sqlite:///{tmp}/customers.db"},
                "cep": {"providers": ["offline"]},
                "auth": {"local_issuer": {"key_file": f"{tmp}/issuer.pem"}},
            },
        )
        async with aiohttp.ClientSession() as session:
            await run_stages(settings, session, seconds, stored, Path(tmp))


async def run_stages(
    settings: Any, session: aiohttp.ClientSession, seconds: float, stored: int, tmp: Path
) -> None:
    verifier = build_token_verifier(settings, session)
    engine = build_policy_engine(settings.authz, session, base_dir=settings.base_dir)
    resolver = build_cep_resolver(
        settings.cep,
        session,
        offline_base_dir=settings.base_dir,
        breakers=Breakers(settings.breaker),
    )
    repository, _ = await open_storage(settings)
    ids = []
    for start in range(0, stored, 1000):
        stamp = now()
        batch = [
            {
                **new_customer({**BODY, "email": f"c{n}@example.com", "cpf": f"{n:011d}"}),
                "id": new_id(),
                "created_at": stamp,
                "updated_at": stamp,
            }
            for n in range(start, min(start + 1000, stored))
        ]
        await repository.restore(batch, Change.of("create", "benchmark"))
        ids += [customer["id"] for customer in batch]
    context = ValidationContext(customers=repository, cep=resolver)
    await resolver.resolve("01001000")  # warm
    token = issue_local_token(settings, "bench", SCOPES, [], 3600)
    cold_tokens = [issue_local_token(settings, f"bench-{i}", SCOPES, [], 3600) for i in range(3000)]
    principal = await verifier.authenticate(f"Bearer {token}")
    customer = await repository.get(ids[0])
    assert customer is not None
    view = public_view(customer)
    masked = (await engine.decide(policy_input("GET", PATH, principal, route=PATH))).masked_fields
    schema = CustomerCreateSchema()
    numbers = itertools.count(10_000_000)

    def by_id(i: int) -> str:
        return ids[i % stored]

    def cold_header(i: int) -> str:
        return f"Bearer {cold_tokens[i % len(cold_tokens)]}"

    def fresh(i: int) -> dict[str, Any]:
        n = next(numbers)
        return new_customer({**BODY, "email": f"n{n}@example.com", "cpf": f"{n:011d}"})

    page_body = {"data": [view] * 20, "has_more": True, "next_cursor": "x"}
    stages: list[tuple[str, Callable[[int], Awaitable[object]]]] = [
        ("token verification, cold (a new token)", lambda i: verifier.authenticate(cold_header(i))),
        ("token verification, cached", lambda i: verifier.authenticate(f"Bearer {token}")),
        (
            "policy input + decision, GET by random id",
            lambda i: engine.decide(
                policy_input("GET", f"{PATH}/{by_id(i)}", principal, by_id(i), route=ITEM_ROUTE)
            ),
        ),
        (
            "policy input + decision, page",
            lambda i: engine.decide(policy_input("GET", PATH, principal, route=PATH)),
        ),
        ("request schema load (POST body)", sync(lambda i: schema.load(BODY))),
        *(
            (f"validator {type(v).__name__}", lambda i, v=v: v.validate(BODY, context))
            for v in load_validators(settings.validators)
        ),
        ("CEP cache hit", lambda i: resolver.resolve("01001000")),
        (
            "repository insert (one write alone)",
            lambda i: repository.insert(fresh(i), Change.of("create", "benchmark")),
        ),
        ("repository get by id", lambda i: repository.get(by_id(i))),
        ("repository page of 20", lambda i: repository.page(limit=20)),
        ("public view + masking", sync(lambda i: mask_customer(public_view(customer), masked))),
        ("JSON response, one customer", sync(lambda i: json_response(view))),
        ("JSON response, page of 20", sync(lambda i: json_response(page_body))),
    ]
    print(f"{stored:,} customers stored, {seconds:g} s per stage\n")
    print("| stage | calls/s | median µs | p99 µs |\n|---|---:|---:|---:|")
    for name, call in stages:
        await timed(name, seconds, call)
    await repository.close()
    await resolver.close()
    await engine.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--stored", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.stored))
