"""How a document shows phone numbers: as stored, E.164, or national with an outside-line
prefix; and what a number a phone typed in is stored as. Uses Google's phonenumbers."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

import phonenumbers
from phonenumbers import CountryCodeSource, NumberParseException, PhoneMetadata, PhoneNumberFormat

Style = Literal["as-stored", "e164", "national"]
_NOT_DIGITS = re.compile(r"[^\d+]")
#: Internal extensions are at most this many digits: written so (without a country code or
#: trunk prefix), a number is never given a country code. National numbers are longer in
#: every numbering plan phonenumbers knows but a few small ones (their short numbers are
#: dialled as written anyway).
MAX_EXTENSION_DIGITS = 6


def is_extension(number: str) -> bool:
    """Short enough to be an internal extension (or a short code), as written."""
    return len(_NOT_DIGITS.sub("", number).lstrip("+")) <= MAX_EXTENSION_DIGITS


class NumberFormat:
    """Callable: stored number -> shown number. Numbers that are not telephone numbers
    (internal extensions, SIP addresses, text) are shown as stored."""

    def __init__(
        self, style: Style = "as-stored", region: str | None = None, prefix: str = ""
    ) -> None:
        self.style = style
        self.region = region.upper() if region else None
        self.prefix = prefix
        self.shown = lru_cache(maxsize=65536)(self._shown)
        #: A few numbers' readings (lookups ask for the same callers); the search index
        #: keeps its own for all of a book's numbers.
        self._matchable_cached = lru_cache(maxsize=4096)(self._matchable_uncached)

    def __call__(self, number: str) -> str:
        return number if self.style == "as-stored" else self.shown(number)

    def _parse(self, number: str) -> phonenumbers.PhoneNumber | None:
        parsed = self._read(number)
        # Short internal extensions parse as "possible" numbers, some even as valid ones:
        # only valid numbers are reformatted, and a short one only when written with a
        # country code or trunk prefix (`1640` is an extension, not `+49 1640`).
        if parsed is None or not phonenumbers.is_valid_number(parsed):
            return None
        return parsed if self._explicit(number, parsed) or not is_extension(number) else None

    def _shown(self, number: str) -> str:
        parsed = self._parse(number)
        if parsed is None:
            return number
        if self.style == "e164":
            return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
        if self.region and phonenumbers.region_code_for_number(parsed) == self.region:
            text = phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL)
        else:
            text = phonenumbers.format_out_of_country_calling_number(parsed, self.region or "ZZ")
        return self.prefix + _NOT_DIGITS.sub("", text)

    def e164(self, number: str) -> str | None:
        """The E.164 form of a number as shown or dialled (`+4930123456`), the outside-line
        prefix taken off first; None for what is not a telephone number. A number gets a
        country code when it is valid, or when it has the right length and was written with
        a country code or the national trunk prefix (`+49 (1234) 5678`, `01234 5678`):
        internal extensions and `*`/`#` codes never get one."""
        found = self.matchable(number)
        return found[0] if found else None

    def matchable(self, number: str) -> tuple[str, str] | None:
        """(E.164 form, national significant number) of `number` (see e164), or None."""
        return self._matchable_cached(number)

    def _matchable_uncached(self, number: str) -> tuple[str, str] | None:
        text = number.strip()
        if not text or any(c in text for c in "*#@") or len(text) > 64:
            return None
        readings = [text]
        if self.prefix and self.style == "national" and text.startswith(self.prefix):
            readings.insert(0, text[len(self.prefix) :])
        parsed = [(reading, found) for reading in readings if (found := self._read(reading))]
        if len(parsed) > 1:  # with or without the prefix: a valid reading wins
            parsed.sort(key=lambda pair: not phonenumbers.is_valid_number(pair[1]))
        for reading, candidate in parsed:
            # Written with a country code or trunk prefix, a possible length will do (cheap:
            # no validation against the numbering plan); otherwise it must be valid.
            explicit = self._explicit(reading, candidate)
            if (explicit and phonenumbers.is_possible_number(candidate)) or (
                (explicit or not is_extension(reading)) and phonenumbers.is_valid_number(candidate)
            ):
                return (
                    phonenumbers.format_number(candidate, PhoneNumberFormat.E164),
                    str(candidate.national_number),
                )
        return None

    def _read(self, text: str) -> phonenumbers.PhoneNumber | None:
        try:
            return phonenumbers.parse(text, self.region, keep_raw_input=True)
        except NumberParseException:
            return None

    def _explicit(self, text: str, parsed: phonenumbers.PhoneNumber) -> bool:
        """Written with a country code, an international prefix or the trunk prefix."""
        return (
            parsed.country_code_source != CountryCodeSource.FROM_DEFAULT_COUNTRY
            or self._trunk_prefixed(text)
        )

    def _trunk_prefixed(self, text: str) -> bool:
        metadata = PhoneMetadata.metadata_for_region(self.region or "")
        trunk = metadata.national_prefix if metadata is not None else None
        digits = _NOT_DIGITS.sub("", text)
        return bool(trunk) and digits.startswith(trunk or "") and not digits.startswith("+")

    def stored(self, typed: str) -> str:
        """What a number typed on a phone is stored upstream as: without the outside-line
        prefix, in international format when it parses (else as typed)."""
        if self.style == "as-stored":
            return typed
        text = typed
        if self.style == "national" and self.prefix and text.startswith(self.prefix):
            text = text[len(self.prefix) :]
        parsed = self._parse(text)
        if parsed is None:
            return typed
        return phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL)
