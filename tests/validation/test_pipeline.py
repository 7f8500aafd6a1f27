from collections.abc import Mapping
from typing import Any

import pytest

from service.errors import InvalidFields, ServiceUnavailable
from service.settings import SettingsError, ValidatorEntry
from service.validation.base import Outcome, ValidationContext, Validator
from service.validation.builtins import CpfValidator, EmailValidator, PhoneValidator
from service.validation.pipeline import ValidatorPipeline, load_validators


class ShoutingName(Validator):
    """A third-party style validator, loaded by `module:Class`."""

    name = "shouting_name"
    fields = ("name",)

    def __init__(self, suffix: str = "!") -> None:
        self.suffix = suffix

    async def validate(self, values: Mapping[str, Any], context: ValidationContext) -> Outcome:
        return Outcome(updates={"name": values["name"].upper() + self.suffix})


class CepDown(Validator):
    name = "cep_down"
    fields = ("cep",)

    async def validate(self, values: Mapping[str, Any], context: ValidationContext) -> Outcome:
        raise ServiceUnavailable("CEP providers are down")


class NotAValidator:
    pass


def test_builtins_load_by_entry_point_name_in_order():
    entries = [
        ValidatorEntry("cpf"),
        ValidatorEntry("email"),
        ValidatorEntry("phone", {"region": "BR", "types": ["mobile"]}),
    ]
    validators = load_validators(entries)
    assert [type(v) for v in validators] == [CpfValidator, EmailValidator, PhoneValidator]


def test_module_path_and_options():
    (validator,) = load_validators([ValidatorEntry(f"{__name__}:ShoutingName", {"suffix": "?"})])
    assert isinstance(validator, ShoutingName) and validator.suffix == "?"


def test_disabled_entries_are_not_loaded():
    assert (
        load_validators([ValidatorEntry("email", enabled=False), ValidatorEntry("cpf")])[0].name
        == "cpf"
    )
    assert len(load_validators([ValidatorEntry("email", enabled=False)])) == 0


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (ValidatorEntry("emial"), r"validators\[1\] \(use: emial\).*no validator is registered"),
        (ValidatorEntry("service.nope:Thing"), r"validators\[1\].*ModuleNotFoundError"),
        (ValidatorEntry(f"{__name__}:NotAValidator"), r"validators\[1\].*not a Validator"),
        (ValidatorEntry("phone", {"region": "ZZ"}), r"validators\[1\] \(use: phone\).*region"),
        (ValidatorEntry("cpf", {"strict": True}), r"validators\[1\] \(use: cpf\).*TypeError"),
    ],
)
def test_bad_entries_fail_naming_the_entry(entry, expected):
    with pytest.raises(SettingsError, match=expected):
        load_validators([ValidatorEntry("email"), entry])


async def test_every_error_is_collected_and_dependent_checks_are_skipped(context):
    pipeline = ValidatorPipeline(
        load_validators(
            [ValidatorEntry(name) for name in ("email", "email_unique", "phone", "cpf", "cep")]
        )
    )
    with pytest.raises(InvalidFields) as caught:
        await pipeline.run(
            {
                "email": "nope",
                "phone": "123",
                "cpf": "111.111.111-11",
                "cep": "99999-999",
                "name": "x",
            },
            context,
        )
    assert [(e.field, e.code) for e in caught.value.errors] == [
        ("email", "invalid"),
        ("phone", "invalid"),
        ("cpf", "invalid"),
        ("cep", "not_found"),
    ]
    assert context.customers.calls == []  # email_unique skipped: the email already failed


async def test_updates_flow_to_later_validators(context):
    pipeline = ValidatorPipeline(
        load_validators(
            [ValidatorEntry("email"), ValidatorEntry("email_unique"), ValidatorEntry("phone")]
        )
    )
    with pytest.raises(InvalidFields):  # the phone fails, so the uniqueness is asked too
        await pipeline.run({"email": " Maria@Example.COM ", "phone": "1"}, context)
    assert context.customers.calls == [("email", "maria@example.com", None)]


UNIQUE_AROUND_PHONE = [
    ValidatorEntry("email"),
    ValidatorEntry("email_unique"),
    ValidatorEntry("phone"),
    ValidatorEntry("cpf"),
    ValidatorEntry("cpf_unique"),
]


async def test_uniqueness_is_left_to_the_storage_when_nothing_else_fails(context):
    """The write's unique index decides (and names every clash): no read before it."""
    context.customers.taken = {"email": {"maria@example.com"}}
    pipeline = ValidatorPipeline(load_validators(UNIQUE_AROUND_PHONE))
    values = await pipeline.run(
        {"email": "maria@example.com", "phone": "(11) 91234-5678", "cpf": "529.982.247-25"},
        context,
    )
    assert values["cpf"] == "52998224725"
    assert context.customers.calls == []


@pytest.mark.parametrize("failing", ["phone", "cpf"])
async def test_a_failing_request_lists_its_duplicates_beside_the_other_errors(context, failing):
    context.customers.taken = {"email": {"maria@example.com"}, "cpf": {"52998224725"}}
    pipeline = ValidatorPipeline(load_validators(UNIQUE_AROUND_PHONE))
    values = {"email": "Maria@example.com", "phone": "(11) 91234-5678", "cpf": "529.982.247-25"}
    values[failing] = "1"
    with pytest.raises(InvalidFields) as caught:
        await pipeline.run(values, context)
    expected = [("email", "already_exists"), ("phone", "invalid"), ("cpf", "already_exists")]
    if failing == "cpf":  # a CPF that is not one is not looked up
        expected[1:] = [("cpf", "invalid")]
    assert [(e.field, e.code) for e in caught.value.errors] == expected


async def test_only_validators_of_present_fields_run(context):
    pipeline = ValidatorPipeline(
        load_validators([ValidatorEntry("email"), ValidatorEntry("cpf"), ValidatorEntry("cep")])
    )
    assert await pipeline.run({"cpf": "52998224725"}, context) == {"cpf": "52998224725"}
    assert context.cep.asked == []


async def test_an_outage_gives_way_to_field_errors_then_is_raised(context):
    pipeline = ValidatorPipeline([EmailValidator(), CepDown()])
    with pytest.raises(InvalidFields) as caught:
        await pipeline.run({"email": "bad", "cep": "01001000"}, context)
    assert [e.field for e in caught.value.errors] == ["email"]
    with pytest.raises(ServiceUnavailable):
        await pipeline.run({"email": "ok@example.com", "cep": "01001000"}, context)
