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
import pickle
from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers

from gateway.entry import Entry
from gateway.index_build import (
    NUMBER_KINDS,
    Reading,
    Tables,
    build_anywhere,
    decode,
    dialled,
    rows_of,
)
from gateway.numbers import NumberFormat, is_extension
from gateway.text import words_of

#: Longer than any telephone number: a lookup of more is no number.
MAX_NUMBER = 64


@dataclass(frozen=True)
class Match:
    """A lookup's answer: the entry, the number of it that matched and its kind."""

    entry: Entry
    number: str
    kind: str


class SearchIndex:
    """Search and lookup over a composition's entries (see index_build for the tables;
    a big book's are built in a worker process: construct it off the event loop)."""

    def __init__(
        self,
        entries: Sequence[Entry],
        numbers: NumberFormat,
        previous: SearchIndex | None = None,
    ) -> None:
        self.entries = entries
        self.numbers = numbers
        region = numbers.region
        #: `+` and the document's country code: national numbers are looked up in it only.
        self._home = f"+{phonenumbers.country_code_for_region(region)}" if region else "+"
        # The numbers' readings of the book's previous index, in the same format.
        known = previous.readings if previous and previous.numbers is numbers else b""
        self._tables: Tables = build_anywhere(rows_of(entries), numbers, self._home, known)

    @property
    def readings(self) -> bytes:
        """The numbers' readings, pickled: the next index of the book starts from them."""
        return self._tables.readings

    def reading(self, number: str) -> Reading:
        """(E.164 form, national number) of a number of the book, as the build read it."""
        readings: dict[str, Reading] = pickle.loads(self._tables.readings)
        return readings.get(number)

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
        tables = self._tables
        low = bisect.bisect_left(tables.words, word)
        high = bisect.bisect_left(tables.words, word + "\U0010ffff")
        return set(tables.word_ranks[tables.word_starts[low] : tables.word_starts[high]])

    def _number_ranks(self, term: str) -> set[int]:
        ranks: set[int] = set()
        haystack, starts = self._tables.haystack, self._tables.starts
        for digits in self._digit_forms(term):
            position = haystack.find(digits)
            while position >= 0:
                rank = bisect.bisect_right(starts, position) - 1
                ranks.add(rank)
                # On to the next entry: one match per entry is enough.
                if rank + 1 >= len(starts):
                    break
                position = haystack.find(digits, starts[rank + 1])
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
        tables = self._tables
        found = None
        if e164 := self.numbers.e164(number):
            found = tables.by_e164.get(e164)
        if found is None:
            found = tables.by_raw.get(raw)
        if found is None and not e164 and raw.isdigit() and not is_extension(raw):
            # A national number without its trunk prefix (`301234567`): the whole of it,
            # never the end of a longer number (`12015550123` is not `201 5550123`).
            found = tables.by_national.get(raw)
        if found is None:
            return None
        rank, kind, position = decode(found)
        entry = self.entries[rank]
        name = NUMBER_KINDS[kind]
        shown = entry.get(name)[position]
        return Match(entry, shown, name.removesuffix("_number").removesuffix("_address"))
