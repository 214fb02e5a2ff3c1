"""Phone numbers as the CRM needs them: E.164 (``+79261234567``) whatever the PBX or carrier sent.

Carriers and dialplans hand us ``89261234567``, ``9261234567``, ``+7 (926) 123-45-67``, ``007926…`` or
``810…`` for the same person; Bitrix24 finds the client by the number it is given, so one client would turn
into several leads unless every form becomes one. The portal's default country decides national forms. Short
numbers (emergency, service codes, extensions) and hidden callers are kept apart, never guessed into E.164.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["COUNTRIES", "Country", "PhoneNumber", "normalize"]

NumberKind = Literal["e164", "short", "anonymous", "unknown"]


@dataclass(frozen=True)
class Country:
    """How one country writes its numbers: calling code, national trunk prefix, national number length."""

    calling_code: str
    trunk_prefix: str
    national_length: int | None  # None where lengths vary (Germany): only the trunk prefix is replaced
    international_prefixes: tuple[str, ...] = ("00",)


#: Countries our customers are in; others fall back to international forms only.
COUNTRIES: dict[str, Country] = {
    "RU": Country("7", "8", 10, ("00", "810")),
    "KZ": Country("7", "8", 10, ("00", "810")),
    "BY": Country("375", "80", 9, ("00", "810")),
    "UZ": Country("998", "", 9, ("00", "810")),
    "UA": Country("380", "0", 9),
    "US": Country("1", "1", 10, ("011",)),
    "CA": Country("1", "1", 10, ("011",)),
    "GB": Country("44", "0", 10),
    "DE": Country("49", "0", None),
    "PL": Country("48", "", 9),
}

#: Up to this many digits a number is a short one (112, 0911, an extension), never an E.164 guess.
SHORT_MAX_DIGITS = 6
_ANONYMOUS = {"", "anonymous", "unknown", "restricted", "private", "unavailable", "hidden", "asterisk"}
_SEPARATORS = re.compile(r"[\s\-().\u00a0]")


@dataclass(frozen=True)
class PhoneNumber:
    """A number as we keep it: ``value`` is E.164 for ``kind == "e164"``, the digits as dialed otherwise."""

    value: str
    kind: NumberKind

    @property
    def is_client_number(self) -> bool:
        """Can this number be a CRM client (lead/contact)? Hidden and short numbers cannot."""
        return self.kind in ("e164", "unknown")


def normalize(raw: str | None, country: str = "RU") -> PhoneNumber:
    """``raw`` as E.164 where the default ``country`` makes that certain; see the module docstring."""
    text = _SEPARATORS.sub("", (raw or "").strip())
    if text.lower() in _ANONYMOUS or not re.fullmatch(r"\+?[0-9]+", text):
        return PhoneNumber("", "anonymous") if not any(c.isdigit() for c in text) else _digits_only(text)
    rules = COUNTRIES.get(country.upper())
    if text.startswith("+"):
        return _international(text[1:])
    digits = text
    if len(digits) <= SHORT_MAX_DIGITS:
        return PhoneNumber(digits, "short")
    if rules is not None:
        for prefix in rules.international_prefixes:
            if digits.startswith(prefix) and len(digits) - len(prefix) > SHORT_MAX_DIGITS:
                return _international(digits[len(prefix) :])
        national = _national(digits, rules)
        if national is not None:
            return national
    elif digits.startswith("00"):
        return _international(digits[2:])
    return PhoneNumber(digits, "unknown")


def _national(digits: str, rules: Country) -> PhoneNumber | None:
    cc, trunk, length = rules.calling_code, rules.trunk_prefix, rules.national_length
    if length is None:
        if trunk and digits.startswith(trunk) and not digits.startswith(trunk * 2):
            return PhoneNumber(f"+{cc}{digits[len(trunk) :]}", "e164")
        return None
    if len(digits) == length + len(cc) and digits.startswith(cc):
        return PhoneNumber(f"+{digits}", "e164")  # already with the country code, without "+"
    if trunk and len(digits) == length + len(trunk) and digits.startswith(trunk):
        return PhoneNumber(f"+{cc}{digits[len(trunk) :]}", "e164")
    if len(digits) == length:
        return PhoneNumber(f"+{cc}{digits}", "e164")
    return None


def _international(digits: str) -> PhoneNumber:
    if not digits.isdigit() or not 8 <= len(digits) <= 15 or digits.startswith("0"):
        return PhoneNumber(digits, "unknown")
    return PhoneNumber(f"+{digits}", "e164")


def _digits_only(text: str) -> PhoneNumber:
    digits = "".join(c for c in text if c.isdigit())
    return PhoneNumber(digits, "short" if len(digits) <= SHORT_MAX_DIGITS else "unknown")
