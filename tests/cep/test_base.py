from __future__ import annotations

import pytest

from service.api.problems import to_problem
from service.cep.base import Address, CepUnavailable, normalize_cep
from service.errors import ServiceUnavailable


@pytest.mark.parametrize(
    "raw",
    ["01001000", "01001-000", "01.001-000", "01.001000", "  01001-000 ", "\t01001000\n"],
)
def test_normalize_accepts_the_usual_spellings(raw: str) -> None:
    assert normalize_cep(raw) == "01001000"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "0100100",  # 7 digits
        "010010000",  # 9 digits
        "01001-0000",
        "0100-1000",  # hyphen in the wrong place
        "01001 000",
        "01,001-000",
        "01001-00a",
        "ABCDEFGH",
        "０１００１０００",  # full-width digits are not ASCII digits
        "01001--000",
    ],
)
def test_normalize_rejects_malformed(raw: str) -> None:
    assert normalize_cep(raw) is None


def test_address_round_trips_through_a_dict() -> None:
    address = Address("01001000", "Praça da Sé", "Sé", "São Paulo", "SP", "viacep")
    data = address.as_dict()
    assert data == {
        "cep": "01001000",
        "street": "Praça da Sé",
        "neighborhood": "Sé",
        "city": "São Paulo",
        "state": "SP",
        "source": "viacep",
    }
    assert Address.from_dict(data) == address


@pytest.mark.parametrize("broken", [{"city": None}, {"state": 35}])
def test_address_from_dict_rejects_bad_fields(broken: dict[str, object]) -> None:
    data: dict[str, object] = {
        **Address("01001000", "", "", "São Paulo", "SP", "offline").as_dict(),
        **broken,
    }
    with pytest.raises(ValueError):
        Address.from_dict(data)


def test_address_from_dict_rejects_a_missing_field() -> None:
    data = Address("01001000", "", "", "São Paulo", "SP", "offline").as_dict()
    del data["source"]
    with pytest.raises(ValueError, match="source"):
        Address.from_dict(data)


def test_cep_unavailable_is_a_503_with_a_short_retry_after() -> None:
    exc = CepUnavailable()
    assert isinstance(exc, ServiceUnavailable)  # a domain error; the edge's table answers it
    problem = to_problem(exc)
    assert problem is not None and problem.status == 503
    assert problem.detail == CepUnavailable.default_detail
    assert 0 < int(problem.headers["Retry-After"]) <= 10
