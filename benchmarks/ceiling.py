"""The ceiling: a bare aiohttp app answering what the API answers, doing nothing else.

GET returns a fixed customer-sized JSON; POST and PATCH parse the JSON body and answer it
back (201 / 200). Whatever the real service reaches is measured against this.

    python benchmarks/ceiling.py --port 8081 [--workers 2]

With --workers N, N processes serve the port (SO_REUSEPORT), as `serve --workers N` does.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing

from aiohttp import web

CUSTOMER = {
    "id": "6750c0ffee0000000000beef",
    "name": "Maria da Silva",
    "email": "maria.silva@example.com",
    "phone": "+5511912345678",
    "cpf": "52998224725",
    "address": {
        "cep": "01001000",
        "street": "Praça da Sé",
        "neighborhood": "Sé",
        "city": "São Paulo",
        "state": "SP",
        "number": "100",
        "complement": "apto 12",
        "source": "offline",
    },
    "created_at": "2026-01-01T12:00:00Z",
    "updated_at": "2026-01-01T12:00:00Z",
}


async def get_one(request: web.Request) -> web.Response:
    return web.json_response(CUSTOMER)


async def write(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({**CUSTOMER, **body}, status=201 if request.method == "POST" else 200)


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/health/live", get_one)
    app.router.add_get("/api/v1/customers/{customer_id}", get_one)
    app.router.add_patch("/api/v1/customers/{customer_id}", write)
    app.router.add_post("/api/v1/customers", write)
    return app


def serve(port: int, reuse_port: bool) -> None:
    web.run_app(
        create_app(),
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        reuse_port=reuse_port or None,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    json.dumps(CUSTOMER)  # fail early on a bad constant
    fork = multiprocessing.get_context("fork")
    others = [
        fork.Process(target=serve, args=(args.port, True), daemon=True)
        for _ in range(args.workers - 1)
    ]
    for process in others:
        process.start()
    try:
        serve(args.port, args.workers > 1)
    finally:
        for process in others:
            process.terminate()
            process.join()
