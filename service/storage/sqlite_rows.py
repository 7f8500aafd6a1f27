"""How a customer is a row of the SQLite `customers` table, and back.

The columns: id, the indexed ones, and `data` (every other field, as JSON; `status` and
`purge_after` are there and, for their indexes, in columns too, as the email and its key).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from service.customers.canonical import email_key
from service.customers.model import CUSTOMER_FIELDS, INDEXED, Customer, from_json, to_json
from service.storage.pii import PiiCodec, SealedCpf

COLUMNS = (
    "id",
    "email_key",
    "cpf_ciphertext",
    "cpf_key_id",
    "cpf_index",
    "status",
    "purge_after",
    "data",
)
_IN_DATA = tuple(f.name for f in CUSTOMER_FIELDS if f.name != "id" and not f.spec.sealed)
SELECT = "SELECT id, cpf_ciphertext, cpf_key_id, cpf_index, data FROM customers"
SELECT_BY_ID = f"{SELECT} WHERE id = ?"
INSERT = (
    f"INSERT INTO customers ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(COLUMNS))}) ON CONFLICT (id) DO NOTHING"
)
UPDATE_ROW = f"UPDATE customers SET {', '.join(f'{c} = ?' for c in COLUMNS)} WHERE id = ?"


def to_row(customer: Mapping[str, Any], codec: PiiCodec) -> tuple[Any, ...]:
    """The values of `COLUMNS` (an anonymized customer: no email key, no sealed CPF)."""
    sealed = None if customer["cpf"] is None else codec.encrypt_cpf(customer["cpf"])
    email = customer["email"]
    data = to_json({name: customer[name] for name in _IN_DATA if name in customer})
    purge_after = customer["purge_after"]
    return (
        customer["id"],
        None if email is None else email_key(email),
        sealed and sealed.ciphertext,
        sealed and sealed.key_id,
        sealed and sealed.index,
        customer["status"],
        None if purge_after is None else purge_after.isoformat(),
        orjson.dumps(data).decode(),
    )


def to_customer(row: Sequence[Any], codec: PiiCodec) -> Customer:
    """A row of `SELECT` as the domain sees it (the CPF in clear)."""
    customer_id, ciphertext, key_id, index, data = row
    record = orjson.loads(data)
    record["id"] = customer_id
    record["cpf"] = (
        None if ciphertext is None else codec.decrypt_cpf(SealedCpf(ciphertext, key_id, index))
    )
    return from_json(record)


def taken_query(field: str) -> str:
    return f"SELECT 1 FROM customers WHERE {INDEXED[field]} = ? AND id IS NOT ? LIMIT 1"


def key_ids(connection: sqlite3.Connection) -> set[str]:
    """Distinct key ids by walking the index: one seek per id, however many rows."""
    found: set[str] = set()
    last = ""
    while True:
        (key_id,) = connection.execute(
            "SELECT MIN(cpf_key_id) FROM customers WHERE cpf_key_id > ?", (last,)
        ).fetchone()
        if key_id is None:
            return found
        found.add(key_id)
        last = key_id
