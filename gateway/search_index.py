"""The index behind search and caller-ID lookup, built once per composition over every
contact of the document before the cap.

- Names: every word of the display name, company, given name and surname, folded (case and accents ignored),
  in one sorted list; a search word is a prefix, found by bisection.
- Numbers for search: each entry's numbers as digits (in E.164 form where they have one,
  else as written), in one string; a run of digits is found with `str.find` (C speed) and mapped to its entry.
- Numbers for lookup: E.164 form -> entry, raw digits -> entry (internal extensions and
  codes, which never get a country code), national significant number -> entry (a caller
  ID without its trunk prefix; only the whole national number matches, never a suffix
  of it nor a longer number ending in it).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers

from gateway.entry import Entry
from gateway.numbers import NumberFormat, is_extension
from gateway.text import words_of

#: The numbers search and lookup look at, in the order a lookup reports the kind.
NUMBER_KINDS = ("business_number", "mobile_number", "home_number", "sip_address")
#: What a dialled number may contain besides digits and separators.
_DIALLED = re.compile(r"[^0-9+*#]")
_SEPARATOR = "\n"
#: Longer than any telephone number: a lookup of more is no number.
MAX_NUMBER = 64


@dataclass(frozen=True)
class Match:
    """A lookup's answer: the entry, the number of it that matched and its kind."""

    entry: Entry
    number: str
    kind: str


def dialled(number: str) -> str:
    """A number without separators: digits, `+`, `*` and `#`."""
    return _DIALLED.sub("", number)


def _sip_user(address: str) -> str:
    """The user part of a SIP address when it is a number (`sip:1234@pbx` -> `1234`)."""
    user = address.removeprefix("sip:").removeprefix("sips:").partition("@")[0]
    return user if user and dialled(user) == user else ""


class SearchIndex:
    def __init__(
        self,
        entries: Sequence[Entry],
        numbers: NumberFormat,
        previous: SearchIndex | None = None,
    ) -> None:
        self.entries = entries
        self.numbers = numbers
        #: Number -> its E.164 reading: parsing is most of a build's cost, and the next
        #: composition of the book reads the same numbers again (taken from `previous`).
        self.readings: dict[str, tuple[str, str] | None] = {}
        region = numbers.region
        #: `+` and the document's country code: national numbers are looked up in it only.
        self._home = f"+{phonenumbers.country_code_for_region(region)}" if region else "+"
        known = previous.readings if previous is not None and previous.numbers is numbers else {}
        pairs: list[tuple[str, int]] = []
        digit_runs: list[str] = []
        self._by_e164: dict[str, tuple[int, str, str]] = {}
        self._by_raw: dict[str, tuple[int, str, str]] = {}
        self._by_national: dict[str, tuple[int, str, str]] = {}
        for rank, entry in enumerate(entries):
            # The display name, the company, and the name parts (a template may leave
            # one out of the display name; Gigaset searches by surname).
            text = " ".join(
                value
                for name in ("company", "given_name", "surname")
                if isinstance(value := entry.get(name), str)
            )
            pairs.extend((word, rank) for word in set(words_of(f"{entry.display_name} {text}")))
            digit_runs.append(self._add_numbers(rank, entry, known))
        pairs.sort()
        self._words = [word for word, _ in pairs]
        self._word_ranks = [rank for _, rank in pairs]
        self._haystack = _SEPARATOR.join(digit_runs)
        self._starts: list[int] = []
        position = 0
        for run in digit_runs:
            self._starts.append(position)
            position += len(run) + 1

    def _add_numbers(
        self, rank: int, entry: Entry, known: dict[str, tuple[str, str] | None]
    ) -> str:
        """Index the entry's numbers for lookup; its digit forms for search."""
        forms: list[str] = []
        for kind in NUMBER_KINDS:
            for shown in entry.get(kind):
                number = _sip_user(shown) if kind == "sip_address" else shown
                raw = dialled(number)
                if not raw:
                    continue
                found = (rank, shown, kind.removesuffix("_number").removesuffix("_address"))
                self._by_raw.setdefault(raw, found)
                matched = known[number] if number in known else self.numbers.matchable(number)
                self.readings[number] = matched
                # The digits as shown (`+49 (0)30 …`, an extension after the number, an
                # outside-line prefix) and, where they differ, the E.164 digits.
                shown_digits = raw.lstrip("+").replace("*", "").replace("#", "")
                forms.append(shown_digits)
                if matched:
                    e164, national = matched
                    self._by_e164.setdefault(e164, found)
                    if e164.startswith(self._home):  # another country's is no local number
                        self._by_national.setdefault(national, found)
                    if e164[1:] != shown_digits:
                        forms.append(e164[1:])
        return " ".join(forms)

    def search(self, term: str) -> list[Entry]:
        """Every entry matching `term`, in the document's order: all its words start a
        word of the name or company; or, for a term of digits (and separators), those
        digits appear in a number, raw or in E.164 form."""
        ranks: set[int] | None = None
        if not any(c.isalpha() for c in term) and any(c.isdigit() for c in term):
            ranks = self._number_ranks(term)
        else:
            for word in words_of(term):
                found = self._prefix_ranks(word)
                ranks = found if ranks is None else ranks & found
                if not ranks:
                    break
        return [self.entries[rank] for rank in sorted(ranks or ())]

    def _prefix_ranks(self, word: str) -> set[int]:
        low = bisect.bisect_left(self._words, word)
        high = bisect.bisect_left(self._words, word + "\U0010ffff")
        return set(self._word_ranks[low:high])

    def _number_ranks(self, term: str) -> set[int]:
        ranks: set[int] = set()
        for digits in self._digit_forms(term):
            position = self._haystack.find(digits)
            while position >= 0:
                rank = bisect.bisect_right(self._starts, position) - 1
                ranks.add(rank)
                # On to the next entry: one match per entry is enough.
                following = self._starts[rank + 1] if rank + 1 < len(self._starts) else None
                if following is None:
                    break
                position = self._haystack.find(digits, following)
        return ranks

    def _digit_forms(self, term: str) -> set[str]:
        """The digits as typed, and the digits of its E.164 readings when it has some (a
        national `030 1234` finds `+49 30 1234…` and the other way round; with an
        outside-line prefix, read with it and without)."""
        raw = dialled(term)
        forms = {raw.lstrip("+").replace("*", "").replace("#", "")}
        if raw.startswith("00"):
            forms.add(raw[2:])
        readings = [raw]
        prefix = self.numbers.prefix
        if prefix and self.numbers.style == "national" and raw.startswith(prefix):
            readings.append(raw[len(prefix) :])
        for reading in readings:
            if e164 := self._partial_e164(reading):
                forms.add(e164)
            if reading.startswith("00"):
                forms.add(reading[2:])
        return {form for form in forms if form and form.isdigit()}

    def _partial_e164(self, raw: str) -> str:
        """The E.164 digits of the beginning of a national number: the trunk prefix
        replaced by the region's country code (`030 12` -> `493012`)."""
        region = self.numbers.region
        if not region or raw.startswith(("+", "00")):
            return ""
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        trunk = metadata.national_prefix if metadata is not None else None
        if not trunk or not raw.startswith(trunk):
            return ""
        return str(phonenumbers.country_code_for_region(region)) + raw[len(trunk) :]

    def lookup(self, number: str) -> Match | None:
        """The entry a caller's number belongs to: its E.164 form, else the same digits
        (an internal extension), else a national number without its trunk prefix. A
        suffix of a stored number matches nothing, nor does a longer number ending in one."""
        if len(number) > MAX_NUMBER:
            return None
        raw = dialled(number)
        if not raw:
            return None
        found = None
        if e164 := self.numbers.e164(number):
            found = self._by_e164.get(e164)
        found = found or self._by_raw.get(raw)
        if found is None and not e164 and raw.isdigit() and not is_extension(raw):
            # A national number without its trunk prefix (`301234567`): the whole of it,
            # never the end of a longer number (`12015550123` is not `201 5550123`).
            found = self._by_national.get(raw)
        if found is None:
            return None
        rank, shown, kind = found
        return Match(self.entries[rank], shown, kind)
