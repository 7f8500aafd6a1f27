"""The validators' context: fake stored customers and a fake CEP resolver."""

from __future__ import annotations

import pytest

from service.validation.base import ValidationContext
from tests.fakes import FakeCep, FakeCustomers


@pytest.fixture
def context() -> ValidationContext:
    return ValidationContext(customers=FakeCustomers(), cep=FakeCep())
