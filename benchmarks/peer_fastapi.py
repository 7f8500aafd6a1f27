"""The peer: a tuned FastAPI + uvicorn app doing the service's GET by id, and nothing else.

It does the work of benchmarks/bare_get.py (the bearer token's claims from a dict, verified
once with PyJWT; the SQLite point read; the CPF's AES-GCM decryption; orjson bytes), as the
floor does on bare aiohttp. "Tuned": an async dependency (no thread-pool hop), one
connection, no response model, uvloop and httptools. It has none of the service's policy,
masking, metrics, problem details, request ids or access log: the service is measured
against it to show what those cost on top of another framework's floor.

Needs the `bench` extra (`pip install -e '.[bench]'`; `make bench` installs it):

    python benchmarks/peer_fastapi.py --config FILE --port 8082
"""

# No `from __future__ import annotations`: FastAPI reads the closures' annotations at run time.

from typing import Annotated, Any

import uvicorn
from bare_get import BareGet, command_line
from fastapi import Depends, FastAPI, Header, HTTPException, Response


def create_app(config: str) -> FastAPI:
    work = BareGet(config)
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    async def claims(authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        found = work.claims(authorization)
        if found is None:
            raise HTTPException(401)
        return found

    @app.get("/health/live")
    async def live() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/api/v1/customers/{customer_id}")
    async def get_one(customer_id: str, _: Annotated[dict[str, Any], Depends(claims)]) -> Response:
        body = work.customer(customer_id)
        if body is None:
            raise HTTPException(404)
        return Response(body, media_type="application/json")

    return app


if __name__ == "__main__":
    args = command_line(__doc__.splitlines()[0])
    uvicorn.run(
        create_app(args.config),
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
        loop="uvloop",
        http="httptools",
    )
