"""The built-in validators, registered as entry points in pyproject.toml."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from validate_docbr import CPF

from service.cep.base import ENRICHED_FIELDS, normalize_cep
from service.customers.canonical import canonical_cpf
from service.customers.errors import already_exists
from service.customers.model import CALLER_OVERRIDES, now
from service.errors import FieldError
from service.validation.base import Outcome, ValidationContext, Validator

_PHONE_TYPES = {
    name.lower(): value
    for name, value in vars(phonenumbers.PhoneNumberType).items()
    if isinstance(value, int) and not name.startswith("_")
}


def _text(values: Mapping[str, Any], name: str) -> str:
    value = values.get(name)
    return value.strip() if isinstance(value, str) else ""


# The common address shape, checked without the library: an ASCII dot-atom local part
# (RFC 5322 atext) well within every length limit; its domain is the library's answer,
# remembered per domain. Anything else goes to email-validator as it is.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_COMMON_ADDRESS = re.compile(rf"({_ATEXT}(?:\.{_ATEXT})*)@([A-Za-z0-9.-]+)")
_MAX_COMMON_LOCAL, _MAX_COMMON_ADDRESS = 64, 200  # the library's limits: 64 and 254
_MAX_DOMAINS = 4096


class EmailValidator(Validator):
    """Syntax (email-validator, no DNS lookups); stores the address lowercased and trimmed.

    The library costs ~40 µs an address; the common shape takes a fast path that answers
    what the library answers (a property test compares them): its domain, the part with
    the intricate rules (IDNA, special-use names, label syntax), is still the library's
    verdict, asked once per distinct domain.
    """

    name = "email"
    fields = ("email",)

    def __init__(self, allow_smtputf8: bool = True) -> None:
        self.allow_smtputf8 = bool(allow_smtputf8)
        self._domains: dict[str, str | None] = {}  # domain -> normalized, None: not valid

    async def validate(self, values: Mapping[str, Any], context: ValidationContext) -> Outcome:
        address = _text(values, "email")
        normalized = self.fast_normalized(address)
        if normalized is None:
            try:
                normalized = self.library_normalized(address)
            except EmailNotValidError as exc:
                return self.error("invalid", f"Not a valid email address: {exc}")
        return Outcome(updates={"email": normalized.lower()})

    def library_normalized(self, address: str) -> str:
        result = validate_email(
            address, check_deliverability=False, allow_smtputf8=self.allow_smtputf8
        )
        return str(result.normalized)

    def fast_normalized(self, address: str) -> str | None:
        """The library's normalized address for the common shape; None: ask the library."""
        if len(address) > _MAX_COMMON_ADDRESS or not address.isascii():
            return None
        match = _COMMON_ADDRESS.fullmatch(address)
        if match is None or len(match.group(1)) > _MAX_COMMON_LOCAL:
            return None
        domain = match.group(2)
        if domain not in self._domains:
            if len(self._domains) >= _MAX_DOMAINS:
                self._domains.clear()
            try:
                self._domains[domain] = self.library_normalized(f"a@{domain}")[2:]
            except EmailNotValidError:
                self._domains[domain] = None
        normalized_domain = self._domains[domain]
        return None if normalized_domain is None else f"{match.group(1)}@{normalized_domain}"


class _UniqueValidator(Validator):
    storage_decides = True

    async def validate(self, values: Mapping[str, Any], context: ValidationContext) -> Outcome:
        field = self.fields[0]
        if await context.customers.exists(
            field, _text(values, field), exclude_id=context.customer_id
        ):
            return Outcome(errors=[already_exists(field)])
        return Outcome()


class EmailUniqueValidator(_UniqueValidator):
    """The duplicate beside the other errors of a failing request; else the unique index
    decides (and the answer is the same)."""

    name = "email_unique"
    fields = ("email",)


class CpfUniqueValidator(_UniqueValidator):
    name = "cpf_unique"
    fields = ("cpf",)


# The common phone shapes, parsed without the library's parser (~40 µs of a registration's
# CPU in the server): digits, optionally after `+` and the region's country code, with
# spaces, hyphens, dots and parentheses between. What the parser could read otherwise is
# left to it: a national or international prefix at the start (`0`, `90` and `00…` for
# Brazil: the region's own `national_prefix_for_parsing`), digits that start with the
# country code but no `+`, letters, extensions, other characters, unusual lengths. The
# library still decides whether the number is valid and of which type. A property test
# shows both parsers give the same number on every input tried.
_PHONE_SEPARATORS = str.maketrans("", "", " ()-.")


def _parsed_common_shape(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    compact = text.translate(_PHONE_SEPARATORS)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.country_code is None:
        return None
    country = str(metadata.country_code)
    if compact.startswith("+"):
        compact = compact[1:]
        if not compact.startswith(country):
            return None
        national = compact[len(country) :]
    else:
        national = compact
        if national.startswith(country):
            return None
    if not (national.isascii() and national.isdigit() and 8 <= len(national) <= 13):
        return None
    prefix = metadata.national_prefix_for_parsing
    if national.startswith("0") or (prefix and re.match(prefix, national)):
        return None
    return phonenumbers.PhoneNumber(
        country_code=metadata.country_code, national_number=int(national)
    )


def parse_phone(text: str, region: str) -> phonenumbers.PhoneNumber:
    """`phonenumbers.parse(text, region)`, without its parser for the common shapes."""
    return _parsed_common_shape(text, region) or phonenumbers.parse(text, region)


class PhoneValidator(Validator):
    """A number of `region` (phonenumbers) of one of the allowed `types`; stored as E.164."""

    name = "phone"
    fields = ("phone",)

    def __init__(self, region: str = "BR", types: Sequence[str] = ("mobile", "fixed_line")) -> None:
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"region {region!r} is not a region phonenumbers knows")
        unknown = [t for t in types if t not in _PHONE_TYPES]
        if unknown or not types:
            raise ValueError(f"types must be some of {sorted(_PHONE_TYPES)}, got {list(types)}")
        self.region = region
        self.types = frozenset(_PHONE_TYPES[t] for t in types)
        if self.types & {
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE,
        }:
            # Numbers that could be either (some regions can't tell them apart).
            self.types |= {phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}

    async def validate(self, values: Mapping[str, Any], context: ValidationContext) -> Outcome:
        try:
            number = parse_phone(_text(values, "phone"), self.region)
        except phonenumbers.NumberParseException:
            return self.error("invalid", "Not a phone number.")
        if phonenumbers.region_code_for_number(number) != self.region:
            return self.error("invalid", f"Not a valid phone number of region {self.region}.")
        if not phonenumbers.is_valid_number(number):
            return self.error("invalid", "Not a valid phone number.")
        if phonenumbers.number_type(number) not in self.types:
            return self.error("type_not_allowed", "This kind of phone number is not accepted.")
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        return Outcome(updates={"phone": e164})


class CpfValidator(Validator):
    """Check digits (validate-docbr), bare or masked (`529.982.247-25`); stored as 11 digits.
    CPFs of one repeated digit pass the check-digit arithmetic but are never issued."""

    name = "cpf"
    fields = ("cpf",)

    async def validate(self, values: Mapping[str, Any], context: ValidationContext) -> Outcome:
        digits = canonical_cpf(_text(values, "cpf"))
        if digits is None:
            return self.error("invalid", "A CPF is 11 digits, bare or as 000.000.000-00.")
        if not CPF(repeated_digits=False).validate(digits):
            return self.error("invalid", "Not a valid CPF (check digits do not match).")
        return Outcome(updates={"cpf": digits})


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


class CepValidator(Validator):
    """Format, then existence through the CEP resolver; adds the address it belongs to.

    A caller's `street` and `neighborhood` are kept only where the CEP names none (a generic
    CEP covers a whole town); a different one where it does is `conflicts_with_cep`. A PATCH
    changing only them is checked against the stored CEP.
    """

    name = "cep"
    fields = ("cep", *CALLER_OVERRIDES)

    async def validate(self, values: Mapping[str, Any], context: ValidationContext) -> Outcome:
        current = (context.current or {}).get("address") or {}
        raw = values["cep"] if "cep" in values else current.get("cep")
        if not isinstance(raw, str):
            return Outcome()  # no CEP to check a street against
        cep = normalize_cep(raw)
        if cep is None:
            return self.error("invalid", "A CEP is 8 digits, bare or as 00000-000.")
        address = await context.cep.resolve(cep)  # raises CepUnavailable (503) when it can't tell
        if address is None:
            return self.error("not_found", "This CEP does not exist.")
        found: dict[str, Any] = {name: getattr(address, name) for name in ENRICHED_FIELDS}
        outcome = Outcome()
        for name in CALLER_OVERRIDES:
            if name not in values:
                continue
            given, named = values[name], found[name].strip()
            if isinstance(given, str) and named and not _same_text(given, named):
                message = f"This CEP names another {name}; leave it out or send the CEP's."
                outcome.errors.append(FieldError(name, "conflicts_with_cep", message))
            elif isinstance(given, str) and not named:
                found[name] = given
            outcome.updates[name] = found[name]
        if "cep" in values:
            outcome.updates |= {"cep": cep, "address": found | {"resolved_at": now()}}
        return outcome
