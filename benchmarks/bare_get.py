"""The GET by id the floor (benchmarks/floor.py) and the FastAPI peer (peer_fastapi.py) both
serve, framework aside: the same work in both, so their rows differ only by the framework.

A bearer token's claims are found in a dict (verified once with PyJWT, ES256 against the
local issuer's key), the row is read from the service's SQLite file with sqlite3, the CPF
decrypted (AES-GCM, the service's key document) and the answer is orjson bytes.
"""

from __future__ import annotations

import argparse
import sqlite3
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization

from service.settings import load_settings
from service.storage.pii import SealedCpf, load_codec
from service.storage.sqlite_rows import SELECT_BY_ID
from service.storage.sqlite_schema import sqlite_path


class BareGet:
    def __init__(self, config: str) -> None:
        self._settings = load_settings([config])
        self._codec = load_codec(self._settings)
        pem = (self._settings.base_dir / self._settings.auth.local_issuer.key_file).read_bytes()
        self._public_key = serialization.load_pem_private_key(pem, password=None).public_key()
        path = sqlite_path(self._settings.storage.url)
        self._connection = sqlite3.connect(path, check_same_thread=False)
        self._verified: dict[str, dict[str, Any]] = {}

    def claims(self, authorization: str | None) -> dict[str, Any] | None:
        """The verified claims of an `Authorization` header; None: not a valid bearer token."""
        if authorization is None:
            return None
        found = self._verified.get(authorization)
        if found is None:
            if not authorization.startswith("Bearer "):
                return None
            try:
                found = jwt.decode(
                    authorization[7:],
                    self._public_key,  # type: ignore[arg-type]
                    algorithms=["ES256"],
                    audience=self._settings.auth.audience,
                    issuer=self._settings.auth.issuer,
                )
            except jwt.PyJWTError:
                return None
            self._verified[authorization] = found
        return found

    def customer(self, customer_id: str) -> bytes | None:
        """The customer as JSON bytes, its CPF in clear; None: no such customer."""
        row = self._connection.execute(SELECT_BY_ID, (customer_id,)).fetchone()
        if row is None:
            return None
        body = {
            "id": row[0],
            **orjson.loads(row[4]),
            "cpf": self._codec.decrypt_cpf(SealedCpf(row[1], row[2], row[3])),
        }
        return orjson.dumps(body)


def command_line(description: str) -> argparse.Namespace:
    """`--config FILE --port N`, as benchmarks/api.py starts both servers."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args()
