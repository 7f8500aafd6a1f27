"""Canonical forms: what is stored, compared and looked up."""

import pytest

from service.customers.canonical import canonical_cpf, email_key

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
