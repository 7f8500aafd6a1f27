from datetime import UTC, datetime, timedelta

import pytest

from service.validation.base import ValidationContext
from service.validation.builtins import (
    CepValidator,
    CpfUniqueValidator,
    CpfValidator,
    EmailUniqueValidator,
    EmailValidator,
    PhoneValidator,
)
from tests.fakes import FakeCep, FakeCustomers


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("Maria.Silva@Example.COM", "maria.silva@example.com"),
        ("  joao@exemplo.com.br ", "joao@exemplo.com.br"),
    ],
)
async def test_email_is_stored_lowercased_and_trimmed(context, raw, stored):
    outcome = await EmailValidator().validate({"email": raw}, context)
    assert outcome.errors == []
    assert outcome.updates == {"email": stored}


@pytest.mark.parametrize(
    "raw", ["", "maria", "maria@", "@example.com", "a b@example.com", "maria@example..com"]
)
async def test_bad_emails_are_rejected(context, raw):
    outcome = await EmailValidator().validate({"email": raw}, context)
    assert [(e.field, e.code) for e in outcome.errors] == [("email", "invalid")]
    assert outcome.updates == {}


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("(11) 91234-5678", "+5511912345678"),
        ("+55 11 91234-5678", "+5511912345678"),
        ("11912345678", "+5511912345678"),
        ("(21) 2345-6789", "+552123456789"),
    ],
)
async def test_brazilian_phones_are_stored_as_e164(context, raw, e164):
    outcome = await PhoneValidator().validate({"phone": raw}, context)
    assert outcome.errors == []
    assert outcome.updates == {"phone": e164}


@pytest.mark.parametrize("raw", ["123", "abc", "(11) 1234", "+1 650 253 0000", "(00) 91234-5678"])
async def test_invalid_or_foreign_phones_are_rejected(context, raw):
    outcome = await PhoneValidator().validate({"phone": raw}, context)
    assert [(e.field, e.code) for e in outcome.errors] == [("phone", "invalid")]


async def test_phone_types_option_restricts_kinds(context):
    mobile_only = PhoneValidator(types=["mobile"])
    assert (await mobile_only.validate({"phone": "(11) 91234-5678"}, context)).errors == []
    fixed = await mobile_only.validate({"phone": "(21) 2345-6789"}, context)
    assert [e.code for e in fixed.errors] == ["type_not_allowed"]


@pytest.mark.parametrize("options", [{"region": "XX"}, {"types": ["pager-ish"]}, {"types": []}])
def test_bad_phone_options_fail_at_construction(options):
    with pytest.raises(ValueError):
        PhoneValidator(**options)


@pytest.mark.parametrize("raw", ["529.982.247-25", "52998224725", " 52998224725 "])
async def test_valid_cpfs_masked_or_bare_are_stored_as_digits(context, raw):
    outcome = await CpfValidator().validate({"cpf": raw}, context)
    assert outcome.errors == []
    assert outcome.updates == {"cpf": "52998224725"}


@pytest.mark.parametrize("digit", "0123456789")
async def test_cpfs_of_one_repeated_digit_are_rejected(context, digit):
    for raw in (digit * 11, f"{digit * 3}.{digit * 3}.{digit * 3}-{digit * 2}"):
        outcome = await CpfValidator().validate({"cpf": raw}, context)
        assert [e.code for e in outcome.errors] == ["invalid"], raw


@pytest.mark.parametrize(
    "raw",
    [
        "529.982.247-24",
        "5299822472",
        "529982247250",
        "529-982-247.25",
        "52998224725a",
        "",
        # A valid CPF in Arabic-Indic and in fullwidth digits: not the ASCII digits stored.
        "52998224725".translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
        "52998224725".translate(str.maketrans("0123456789", "０１２３４５６７８９")),
    ],
)
async def test_bad_cpfs_are_rejected(context, raw):
    outcome = await CpfValidator().validate({"cpf": raw}, context)
    assert [(e.field, e.code) for e in outcome.errors] == [("cpf", "invalid")]


async def test_cep_adds_the_address_it_belongs_to(context):
    before = datetime.now(UTC)
    outcome = await CepValidator().validate({"cep": "01001-000"}, context)
    assert outcome.errors == []
    resolved_at = outcome.updates["address"].pop("resolved_at")
    assert before - timedelta(milliseconds=1) <= resolved_at <= datetime.now(UTC)
    assert outcome.updates == {
        "cep": "01001000",
        "address": {
            "street": "Praça da Sé",
            "neighborhood": "Sé",
            "city": "São Paulo",
            "state": "SP",
            "source": "viacep",
        },
    }


async def test_unknown_cep_is_not_found(context):
    outcome = await CepValidator().validate({"cep": "99999-999"}, context)
    assert [(e.field, e.code) for e in outcome.errors] == [("cep", "not_found")]


async def test_malformed_cep_is_invalid_without_a_lookup(context):
    outcome = await CepValidator().validate({"cep": "0100-1000x"}, context)
    assert [(e.field, e.code) for e in outcome.errors] == [("cep", "invalid")]
    assert context.cep.asked == []


async def test_unique_validators_ask_the_store_excluding_the_customer_itself():
    customers = FakeCustomers(taken={"email": {"maria@example.com"}, "cpf": {"52998224725"}})
    context = ValidationContext(customers=customers, cep=FakeCep(), customer_id="abc")
    email = await EmailUniqueValidator().validate({"email": "maria@example.com"}, context)
    cpf = await CpfUniqueValidator().validate({"cpf": "52998224725"}, context)
    free = await CpfUniqueValidator().validate({"cpf": "11144477735"}, context)
    assert [(e.field, e.code) for e in email.errors] == [("email", "already_exists")]
    assert [(e.field, e.code) for e in cpf.errors] == [("cpf", "already_exists")]
    assert free.errors == []
    assert all(exclude == "abc" for _, _, exclude in customers.calls)
