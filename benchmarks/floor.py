"""The floor: a bare aiohttp handler doing only what no GET by id of this design can skip.

It finds the bearer token's claims in a dict (verified once with PyJWT, ES256 against the
local issuer's key), reads the row from the same SQLite file with sqlite3, decrypts the CPF
(AES-GCM, the service's key document) and answers orjson bytes, on uvloop as `serve` runs.
No policy, masking, audit trail, access log, metrics, request ids or problem details: the
distance from the ceiling to this row is what the storage read and the decryption cost on
this machine, and the distance from this row to the service's is what every feature the
contract asks for costs on top.

    python benchmarks/floor.py --config FILE --port 8083
"""

from __future__ import annotations

import argparse
import sqlite3
from typing import Any

import jwt
import orjson
import uvloop
from aiohttp import hdrs, web
from cryptography.hazmat.primitives import serialization

from service.settings import load_settings
from service.storage.pii import SealedCpf, load_codec
from service.storage.sqlite_schema import sqlite_path

JSON = "application/json"


def create_app(config: str) -> web.Application:
    settings = load_settings([config])
    codec = load_codec(settings)
    pem = (settings.base_dir / settings.auth.local_issuer.key_file).read_bytes()
    public_key = serialization.load_pem_private_key(pem, password=None).public_key()
    connection = sqlite3.connect(sqlite_path(settings.storage.url))
    verified: dict[str, dict[str, Any]] = {}

    def claims(header: str) -> dict[str, Any]:
        found = verified.get(header)
        if found is None:
            if not header.startswith("Bearer "):
                raise web.HTTPUnauthorized()
            try:
                found = jwt.decode(
                    header[7:],
                    public_key,  # type: ignore[arg-type]
                    algorithms=["ES256"],
                    audience=settings.auth.audience,
                    issuer=settings.auth.issuer,
                )
            except jwt.PyJWTError:
                raise web.HTTPUnauthorized() from None
            verified[header] = found
        return found

    async def get_one(request: web.Request) -> web.Response:
        claims(request.headers.get(hdrs.AUTHORIZATION, ""))
        row = connection.execute(
            "SELECT id, cpf_ciphertext, cpf_key_id, cpf_index, data FROM customers WHERE id = ?",
            (request.match_info["customer_id"],),
        ).fetchone()
        if row is None:
            raise web.HTTPNotFound()
        body = {
            "id": row[0],
            **orjson.loads(row[4]),
            "cpf": codec.decrypt_cpf(SealedCpf(row[1], row[2], row[3])),
        }
        return web.Response(body=orjson.dumps(body), content_type=JSON)

    async def live(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=JSON)

    app = web.Application()
    app.router.add_get("/health/live", live)
    app.router.add_get("/api/v1/customers/{customer_id}", get_one)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(
        create_app(args.config),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )
