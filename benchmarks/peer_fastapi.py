"""The peer: a tuned FastAPI + uvicorn app doing the service's GET by id, and nothing else.

It verifies the bearer token (PyJWT, ES256 against the local issuer's key, the verified
claims cached by token), reads the row from the same SQLite file with sqlite3, decrypts the
CPF (AES-GCM, the service's key document) and answers orjson bytes. "Tuned": an async
dependency (no thread-pool hop), one connection, no response model. It has none of the
service's policy, masking, metrics, problem details, request ids or access log: the service
is measured against it to show what those cost on top of another framework's floor.

Needs the `bench` extra (`pip install -e '.[bench]'`; `make bench` installs it):

    python benchmarks/peer_fastapi.py --config FILE --port 8082
"""

# No `from __future__ import annotations`: FastAPI reads the closures' annotations at run time.

import argparse
import sqlite3
from typing import Annotated, Any

import jwt
import orjson
import uvicorn
from cryptography.hazmat.primitives import serialization
from fastapi import Depends, FastAPI, Header, HTTPException, Response

from service.settings import load_settings
from service.storage.pii import SealedCpf, load_codec
from service.storage.sqlite_schema import sqlite_path


def create_app(config: str) -> FastAPI:
    settings = load_settings([config])
    codec = load_codec(settings)
    pem = (settings.base_dir / settings.auth.local_issuer.key_file).read_bytes()
    public_key = serialization.load_pem_private_key(pem, password=None).public_key()
    connection = sqlite3.connect(sqlite_path(settings.storage.url), check_same_thread=False)
    verified: dict[str, dict[str, Any]] = {}
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    async def claims(authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        if authorization is None or not authorization.startswith("Bearer "):
            raise HTTPException(401)
        token = authorization[7:]
        found = verified.get(token)
        if found is None:
            try:
                found = jwt.decode(
                    token,
                    public_key,  # type: ignore[arg-type]
                    algorithms=["ES256"],
                    audience=settings.auth.audience,
                    issuer=settings.auth.issuer,
                )
            except jwt.PyJWTError:
                raise HTTPException(401) from None
            verified[token] = found
        return found

    @app.get("/health/live")
    async def live() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/api/v1/customers/{customer_id}")
    async def get_one(customer_id: str, _: Annotated[dict[str, Any], Depends(claims)]) -> Response:
        row = connection.execute(
            "SELECT id, cpf_ciphertext, cpf_key_id, cpf_index, data FROM customers WHERE id = ?",
            (customer_id,),
        ).fetchone()
        if row is None:
            raise HTTPException(404)
        body = {
            "id": row[0],
            **orjson.loads(row[4]),
            "cpf": codec.decrypt_cpf(SealedCpf(row[1], row[2], row[3])),
        }
        return Response(orjson.dumps(body), media_type="application/json")

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.config),
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
        loop="uvloop",
        http="httptools",
    )
