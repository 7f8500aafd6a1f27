from __future__ import annotations

import pytest

from service.authz.masking import mask_cpf, mask_customer, mask_phone
from service.customers.model import DEFAULT_MASKED

CUSTOMER = {
    "id": "c-1",
    "name": "Maria da Silva",
    "email": "maria@example.com",
    "phone": "+5511912345678",
    "cpf": "52998224725",
    "address": {"cep": "01001000", "city": "São Paulo"},
}
PII = DEFAULT_MASKED  # the field table's `masked`: what the default policy hides


def test_masks_cpf_and_phone() -> None:
    masked = mask_customer(CUSTOMER, PII)
    assert masked["cpf"] == "***.982.247-**"
    assert masked["phone"] == "*********5678"
    assert {k: v for k, v in masked.items() if k not in PII} == {
        k: v for k, v in CUSTOMER.items() if k not in PII
    }


def test_returns_a_copy() -> None:
    mask_customer(CUSTOMER, PII)
    assert CUSTOMER["cpf"] == "52998224725"


def test_nothing_masked_without_fields() -> None:
    assert mask_customer(CUSTOMER, frozenset()) == CUSTOMER


def test_clear_values_never_survive() -> None:
    text = str(mask_customer(CUSTOMER, PII))
    assert "52998224725" not in text
    assert "912345678" not in text


def test_other_named_fields_fully_masked() -> None:
    masked = mask_customer(CUSTOMER, frozenset({"email", "address", "absent"}))
    assert masked["email"] == "***"
    assert masked["address"] == "***"
    assert "absent" not in masked


def test_none_stays_none() -> None:
    assert mask_customer({"cpf": None, "phone": None}, PII) == {"cpf": None, "phone": None}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("529.982.247-25", "***.982.247-**"), ("1234", "***"), ("", "***"), ("abc", "***")],
)
def test_mask_cpf(value: str, expected: str) -> None:
    assert mask_cpf(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+55 11 91234-5678", "*********5678"),
        ("+551133334444", "********4444"),
        ("1234567", "***"),
    ],
)
def test_mask_phone(value: str, expected: str) -> None:
    assert mask_phone(value) == expected


def test_non_string_values_fully_masked() -> None:
    assert mask_customer({"cpf": 52998224725, "phone": 5511912345678}, PII) == {
        "cpf": "***",
        "phone": "***",
    }
