"""The ASCII fast paths answer exactly what the general paths answer, on every input."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.customers.canonical import TextError, normalize_any_text, normalize_text
from service.validation.builtins import EmailValidator


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
