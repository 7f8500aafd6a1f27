"""Canonical forms: what is stored, compared and looked up."""

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.customers.canonical import TextError, canonical_cpf, email_key, normalize_text

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@pytest.mark.parametrize("raw", ["52998224725", "529.982.247-25", " 529.982.247-25 "])
def test_a_cpf_bare_or_formatted_is_its_eleven_ascii_digits(raw):
    assert canonical_cpf(raw) == "52998224725"


@pytest.mark.parametrize(
    "raw",
    [
        "52998224725".translate(ARABIC_INDIC),
        "529.982.247-25".translate(FULLWIDTH),
        "529982247-25",
        "5299822472",
        "",
    ],
)
def test_anything_else_has_no_canonical_cpf(raw):
    assert canonical_cpf(raw) is None


def test_the_email_key_lower_cases_and_never_folds():
    assert email_key("  Maria@Example.COM ") == "maria@example.com"
    assert email_key("Straße@example.com") != email_key("strasse@example.com")
    assert email_key("İ@example.com") != email_key("i@example.com")


# Every format character (Cf) Unicode assigns, except the two joiners.
FORMAT_CHARACTERS = [
    chr(code)
    for code in range(0x110000)
    if unicodedata.category(chr(code)) == "Cf" and chr(code) not in "\u200c\u200d"
]
WORD_LETTERS = st.characters(categories=("Lu", "Ll", "Lo"))


@given(
    before=st.text(WORD_LETTERS, min_size=1, max_size=8),
    after=st.text(WORD_LETTERS, max_size=8),
    char=st.sampled_from(FORMAT_CHARACTERS),
)
def test_format_characters_are_refused_anywhere_in_text(before: str, after: str, char: str) -> None:
    """Bidi overrides and isolates, tag characters, zero-width space, soft hyphen, BOM..."""
    for value in (before + char + after, char + before, before + char):
        with pytest.raises(TextError) as caught:
            normalize_text(value)
        assert caught.value.code == "invalid_characters", (value, caught.value.code)


@given(
    before=st.text(WORD_LETTERS, min_size=1, max_size=8),
    after=st.text(WORD_LETTERS, min_size=1, max_size=8),
    joiner=st.sampled_from("\u200c\u200d"),
)
def test_a_joiner_inside_a_word_is_text(before: str, after: str, joiner: str) -> None:
    value = unicodedata.normalize("NFC", before + joiner + after)
    assert normalize_text(value) == value


@pytest.mark.parametrize("value", ["\u200dMaria", "Maria\u200c", "Maria \u200d Silva", "1\u200d2"])
def test_a_joiner_outside_a_word_is_refused(value: str) -> None:
    with pytest.raises(TextError):
        normalize_text(value)


def test_the_review_samples_are_refused() -> None:
    """U+202E reversing a name, and tag characters hiding text inside it."""
    for value in ("Maria \u202eavlis", "Maria\U000e0041\U000e0042 Silva", "Ma\u2066ria\u2069"):
        with pytest.raises(TextError):
            normalize_text(value)
    assert normalize_text("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645") == (
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    )
