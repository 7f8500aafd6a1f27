"""The ASCII fast paths answer exactly what the general paths answer, on every input."""

from __future__ import annotations

import phonenumbers
import pytest
from email_validator import EmailNotValidError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.customers.canonical import TextError, normalize_any_text, normalize_text
from service.validation.builtins import EmailValidator, _parsed_common_shape, parse_phone


def outcome(normalize: object, value: str) -> tuple[str, str]:
    try:
        return ("ok", normalize(value))  # type: ignore[operator]
    except TextError as exc:
        return ("error", exc.code)


ASCII = st.text(st.characters(max_codepoint=127))


@settings(max_examples=3000)
@given(st.one_of(ASCII, st.text(), st.sampled_from([" ", "\t a \n", "a\x00", "  x  y  ", ""])))
def test_text_fast_path_agrees_with_the_unicode_path(value: str) -> None:
    assert outcome(normalize_text, value) == outcome(normalize_any_text, value)


ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
LOCAL = st.text(st.sampled_from([*ATEXT, ".", ".", "@", " ", '"', "(", "é", "\\"]), max_size=70)
LABEL = st.text(st.sampled_from([*"abzAZ09", "-", "-"]), min_size=0, max_size=12)
DOMAIN = st.one_of(
    st.lists(LABEL, min_size=1, max_size=4).map(".".join),
    st.sampled_from(
        [
            "example.com",
            "Example.COM",
            "gmail.com",
            "x.test",
            "x.local",
            "a.arpa",
            "localhost",
            "x.123",
            "123.com",
            "xn--80ak6aa92e.com",
            "XN--80AK6AA92E.COM",
            "x..com",
            "-x.com",
            "x-.com",
            "a" * 64 + ".com",
            "a" * 63 + ".com",
            ("b" * 60 + ".") * 4 + "com",
            "[127.0.0.1]",
            "x.c0m",
            "x.a",
        ]
    ),  # fmt: skip
)
ADDRESS = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN),
    st.text(st.characters(max_codepoint=127), max_size=40),
)


@pytest.mark.parametrize("allow_smtputf8", [True, False])
@settings(max_examples=1500, deadline=None)
@given(address=ADDRESS)
@example(address="Maria.Silva@Example.COM")
@example(address="a" * 64 + "@example.com")
@example(address="a" * 65 + "@example.com")
@example(address="a@" + "b" * 250 + ".com")
def test_email_fast_path_answers_what_the_library_answers(
    allow_smtputf8: bool, address: str
) -> None:
    validator = EmailValidator(allow_smtputf8=allow_smtputf8)
    fast = validator.fast_normalized(address)
    try:
        expected: str | None = validator.library_normalized(address)
    except EmailNotValidError:
        expected = None
    if fast is not None:  # None: the fast path leaves the address to the library
        assert fast == expected


def test_email_fast_path_takes_the_common_shape() -> None:
    validator = EmailValidator()
    assert validator.fast_normalized("Maria.Silva+news@Example.COM") == (
        "Maria.Silva+news@example.com"
    )
    assert validator.fast_normalized("maria@x.test") is None  # the library explains why
    assert validator.fast_normalized('"quoted"@example.com') is None


PHONE_PIECES = st.sampled_from([*"0123456789", "9", "1", " ", "-", ".", "(", ")", "+", "/", "x"])
LEADS = ["", "+", "+55", "+55 ", "55", "0", "00", "90", "+1 ", "(", "+550", "+5590", "+351"]


def spaced(lead: str, digits: str, gaps: list[str]) -> str:
    """`lead`, then the digits with a separator (or none) after each."""
    return lead + "".join(d + (gaps[i] if i < len(gaps) else "") for i, d in enumerate(digits))


GAPS = st.lists(st.sampled_from(["", "", "", " ", "-", ".", ")", "("]), max_size=14)
COMMON = st.builds(  # the shapes the fast path takes, any area code and length near them
    spaced,
    st.sampled_from(["", "+55", "+55 ", "+55(", "+1", "+351 "]),
    st.text(st.sampled_from("0123456789"), min_size=7, max_size=14),
    GAPS,
)
PHONE = st.one_of(
    COMMON,
    st.text(PHONE_PIECES, max_size=20),
    st.builds(
        spaced,
        st.sampled_from(LEADS),
        st.text(st.sampled_from("0123456789"), min_size=6, max_size=14),
        GAPS,
    ),
)
REGIONS = st.sampled_from(["BR", "PT", "US", "AR"])


@settings(max_examples=4000, deadline=None)
@given(text=PHONE, region=REGIONS)
@example(text="(11) 91234-5678", region="BR")
@example(text="+55 11 91234-5678", region="BR")
@example(text="5511912345678", region="BR")
@example(text="55 91234-5678", region="BR")
@example(text="9011912345678", region="BR")
@example(text="011912345678", region="BR")
@example(text="+55011912345678", region="BR")
def test_phone_fast_path_parses_what_the_library_parses(text: str, region: str) -> None:
    fast = _parsed_common_shape(text, region)
    if fast is None:  # left to the library
        return
    assert fast == phonenumbers.parse(text, region)


def test_phone_fast_path_takes_the_common_shapes() -> None:
    for text in ("(11) 91234-5678", "+55 11 91234-5678", "11912345678", "+55.11.3456-7890"):
        assert _parsed_common_shape(text, "BR") is not None, text
    for text in ("5511912345678", "011 91234-5678", "90 11 91234-5678", "11 91234-5678 x12"):
        assert _parsed_common_shape(text, "BR") is None, text
    assert parse_phone("011 91234-5678", "BR") == phonenumbers.parse("011 91234-5678", "BR")
