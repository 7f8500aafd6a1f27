"""One function per canonical form: what is stored, compared and looked up.

Stored values are canonical (DESIGN.md "Stored values"): text in NFC without control
characters, email lower-cased (never case-folded: `straße@` and `strasse@` are two
mailboxes), CPF and CEP as bare digits.
"""

from __future__ import annotations

import re
import unicodedata

# A customer id: an ObjectId's 24 hex digits (the one pattern; the OpenAPI document shows it).
ID_RE = re.compile(r"[0-9a-fA-F]{24}")
# ASCII digits only: `\d` would also take Arabic-Indic and other Unicode digits.
_CPF_FORMAT = re.compile(r"[0-9]{11}|[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2}")
# Categories that are never printable text: controls (NUL, ESC, CR, LF, TAB...),
# surrogates (a lone "\ud800" from JSON), private use, unassigned, line/paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn", "Zl", "Zp"})
# Categories that show nothing on their own: format marks (zero-width space, BOM, direction
# marks), spaces, combining marks with no base.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Zs", "Mn", "Me"})
# Format characters (Cf: bidi overrides and isolates, tag characters, zero-width space, soft
# hyphen, BOM...) reorder or hide what a reader sees; only the joiners that some scripts
# (Persian, Indic) need between two letters of a word are text.
_JOINERS = frozenset("\u200c\u200d")
# Letters and symbols that render as blank although their category says otherwise.
_BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


# The stable codes of TextError, with the message clients see for each.
TEXT_ERRORS = {
    "invalid_characters": "Control, bidi, tag or non-printable characters are not allowed.",
    "blank": "The value shows no visible character.",
}


class TextError(ValueError):
    """A value that is not printable text; `code` is the stable code clients see."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def normalize_text(value: str) -> str:
    """NFC, outer whitespace trimmed, inner runs of spaces folded to one.

    Raises TextError for control characters (and the other non-printable categories)
    anywhere in the value, for a value that would show nothing, and for format characters
    (bidi controls, tags) except ZWJ/ZWNJ inside a word.

    ASCII text takes a short path with the same answers (a property test compares them):
    NFC leaves it as it is, its only unprintable characters are controls, and its only
    invisible one is the space.
    """
    if value.isascii():
        if not value.isprintable():
            raise TextError("invalid_characters", TEXT_ERRORS["invalid_characters"])
        text = " ".join(value.split())
        if not text:
            raise TextError("blank", TEXT_ERRORS["blank"])
        return text
    return normalize_any_text(value)


def normalize_any_text(value: str) -> str:
    """`normalize_text` for any text, through the Unicode database."""
    text = unicodedata.normalize("NFC", value)
    if any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in text):
        raise TextError("invalid_characters", TEXT_ERRORS["invalid_characters"])
    text = " ".join(text.split())
    if not any(
        unicodedata.category(char) not in _INVISIBLE_CATEGORIES and char not in _BLANK_CHARACTERS
        for char in text
    ):
        raise TextError("blank", TEXT_ERRORS["blank"])
    if any(
        unicodedata.category(char) == "Cf" and not _joins_a_word(text, index)
        for index, char in enumerate(text)
    ):
        raise TextError("invalid_characters", TEXT_ERRORS["invalid_characters"])
    return text


def _joins_a_word(text: str, index: int) -> bool:
    """Is text[index] a ZWJ/ZWNJ with a letter or mark on both sides?"""
    if text[index] not in _JOINERS or index == 0 or index == len(text) - 1:
        return False
    return all(unicodedata.category(text[i])[0] in "LM" for i in (index - 1, index + 1))


def email_key(email: str) -> str:
    """What the unique index compares: the address trimmed and lower-cased.

    `str.lower`, not `casefold`: case folding maps `ß` to `ss` and would make two mailboxes
    one. Lower-casing `İ` gives `i̇` (with a combining dot), never a plain `i`.
    """
    return email.strip().lower()


def parse_id(value: str) -> str | None:
    """The canonical (lower-case) form of an id, or None for one no customer can have."""
    return value.lower() if ID_RE.fullmatch(value) else None


def canonical_customer_id(value: str) -> str:
    """Ids are lower-case hex: `6B09…` and `6b09…` name one customer, so both the policy
    and the storage see the lower-case form. Anything else is left as sent (and matches
    nobody)."""
    return parse_id(value) or value


def canonical_cpf(value: str) -> str | None:
    """The 11 digits of a CPF written bare or as `000.000.000-00`, or None for anything else.

    Only the form: whether the check digits match is the `cpf` validator's question.
    """
    text = value.strip()
    if not _CPF_FORMAT.fullmatch(text):
        return None
    return text.replace(".", "").replace("-", "")
