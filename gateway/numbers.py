"""How a document shows phone numbers: as stored, E.164, or national with an outside-line
prefix; and what a number a phone typed in is stored as. Uses Google's phonenumbers."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

Style = Literal["as-stored", "e164", "national"]
_NOT_DIGITS = re.compile(r"[^\d+]")


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

    def __call__(self, number: str) -> str:
        return number if self.style == "as-stored" else self.shown(number)

    def _parse(self, number: str) -> phonenumbers.PhoneNumber | None:
        try:
            parsed = phonenumbers.parse(number, self.region)
        except NumberParseException:
            return None
        # Short internal extensions parse as "possible" numbers; only valid ones are reformatted.
        return parsed if phonenumbers.is_valid_number(parsed) else None

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
