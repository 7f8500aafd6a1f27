"""How a customer is a MongoDB document, and back: `_id` for `id`, the email key, the
sealed CPF, the journal's `_outbox` left out of the domain's view."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import ObjectId

from service.customers.canonical import email_key, parse_id
from service.customers.model import CUSTOMER_FIELDS, Customer, complete, with_utc
from service.storage.mongo_common import Document
from service.storage.pii import PiiCodec, SealedCpf

# fields of a document that only storage sees: the email key and the sealed CPF
STORAGE_ONLY = ("email_key", "cpf_ciphertext", "cpf_key_id", "cpf_index")
# what every read of customers adds: a deleted customer waiting for its drain is gone
LIVE = {"_deleted": {"$exists": False}}
# what a document holds besides `_id`, the email key and the sealed CPF
_IN_DOCUMENT = tuple(f.name for f in CUSTOMER_FIELDS if f.name != "id" and not f.spec.sealed)


def to_customer(doc: Mapping[str, Any], codec: PiiCodec) -> Customer:
    """A stored document as the domain sees it: `id` instead of `_id`, the CPF in clear,
    UTC-aware datetimes, the fields of the field table only (defaults for those the
    document predates; index helpers and the outbox left out)."""
    customer = with_utc(doc)
    customer["id"] = str(doc["_id"])
    customer["cpf"] = (
        codec.decrypt_cpf(SealedCpf(doc["cpf_ciphertext"], doc["cpf_key_id"], doc["cpf_index"]))
        if "cpf_ciphertext" in doc
        else None
    )
    return complete(customer)


def sealed_cpf(cpf: str, codec: PiiCodec) -> Document:
    sealed = codec.encrypt_cpf(cpf)
    return {
        "cpf_ciphertext": sealed.ciphertext,
        "cpf_key_id": sealed.key_id,
        "cpf_index": sealed.index,
    }


def to_document(customer: Mapping[str, Any], codec: PiiCodec) -> Document:
    """A customer as a document; an anonymized one has no email key and no sealed CPF."""
    doc = {name: customer[name] for name in _IN_DOCUMENT if name in customer}
    if customer["cpf"] is not None:
        doc |= sealed_cpf(customer["cpf"], codec)
    if customer["email"] is not None:
        doc["email_key"] = email_key(customer["email"])
    if "id" in customer:
        doc["_id"] = ObjectId(customer["id"])
    return doc


def set_fields(changes: Mapping[str, Any], codec: PiiCodec) -> Document:
    """Domain changes as a `$set`: the nested address changes field by field (dotted)."""
    fields = {key: value for key, value in changes.items() if key not in ("address", "cpf")}
    for name, value in (changes.get("address") or {}).items():
        fields[f"address.{name}"] = value
    if "email" in changes:
        fields["email_key"] = email_key(changes["email"])
    if "cpf" in changes:
        fields |= sealed_cpf(changes["cpf"], codec)
    return fields


def object_id(customer_id: str | None) -> ObjectId | None:
    canonical = parse_id(customer_id) if customer_id else None
    return None if canonical is None else ObjectId(canonical)
