"""Building a search index's tables: plain data in, plain data out, so a big book's build
runs in a worker process. There it costs the server neither the GIL (reading 200,000
numbers with phonenumbers takes seconds of Python) nor memory: the build's garbage (a
tuple per word, a reading per number) dies with the worker instead of scattering the
server's heap, and only the compact tables come back.

The tables: distinct words sorted, with their entries' ranks in one array; every number's
digit forms in one string; lookup tables as sorted keys with one int each (an entry's
rank, the number's kind and position). The readings of numbers (parsing is most of a
build's cost) come back as one pickled blob that only the next build opens.
"""

from __future__ import annotations

import bisect
import gc
import pickle
import re
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.entry import Entry
from gateway.heap import bulk, give_back
from gateway.numbers import NumberFormat
from gateway.process_pool import run_elsewhere
from gateway.text import words_of

#: The numbers search and lookup look at, in the order a lookup reports the kind.
NUMBER_KINDS = ("business_number", "mobile_number", "home_number", "sip_address")
#: What a dialled number may contain besides digits and separators.
_DIALLED = re.compile(r"[^0-9+*#]")
SEPARATOR = "\n"
#: An entry as the build reads it: the text its words come from, its numbers per kind.
Row = tuple[str, tuple[tuple[str, ...], ...]]
#: A number's reading: (E.164 form, national significant number), or None.
Reading = tuple[str, str] | None
_KIND_BITS, _POSITION_BITS = 2, 16
#: Books at least this big are indexed in a worker process.
ELSEWHERE_FROM = 5000
#: Pickled in pieces of this many items: each piece holds the GIL only briefly.
_PIECE = 20000


def dialled(number: str) -> str:
    """A number without separators: digits, `+`, `*` and `#`."""
    return _DIALLED.sub("", number)


def sip_user(address: str) -> str:
    """The user part of a SIP address when it is a number (`sip:1234@pbx` -> `1234`)."""
    user = address.removeprefix("sip:").removeprefix("sips:").partition("@")[0]
    return user if user and dialled(user) == user else ""


def code(rank: int, kind: int, position: int) -> int:
    return (((rank << _KIND_BITS) | kind) << _POSITION_BITS) | position


def decode(found: int) -> tuple[int, int, int]:
    """(rank, kind, position) of a lookup table's int."""
    rank, rest = divmod(found, 1 << (_KIND_BITS + _POSITION_BITS))
    kind, position = divmod(rest, 1 << _POSITION_BITS)
    return rank, kind, position


@dataclass
class Table:
    """A dict of str -> int kept as sorted keys and an array: no dict slots, no int
    objects (a 200,000-number book's lookup dicts were tens of MB)."""

    keys: list[str] = field(default_factory=list)
    values: array[int] = field(default_factory=lambda: array("Q"))

    @classmethod
    def of(cls, items: dict[str, int]) -> Table:
        keys = sorted(items)
        return cls(keys, array("Q", (items[key] for key in keys)))

    def get(self, key: str) -> int | None:
        at = bisect.bisect_left(self.keys, key)
        if at < len(self.keys) and self.keys[at] == key:
            return self.values[at]
        return None


@dataclass
class Tables:
    words: list[str]
    word_starts: array[int]  # words[i]'s ranks are word_ranks[word_starts[i]:word_starts[i+1]]
    word_ranks: array[int]
    haystack: str  # each entry's digit forms, SEPARATOR between entries
    starts: array[int]  # where each entry's forms begin in the haystack
    by_e164: Table
    by_raw: Table  # dialled digits as stored (extensions, codes, and the rest)
    by_national: Table  # national significant numbers of the document's country
    readings: bytes  # pickled {number: Reading}, for the next build


def rows_of(entries: Iterable[Entry]) -> list[Row]:
    """What the build reads of each entry: the display name, the company, and the name
    parts (a template may leave one out of the display name; Gigaset searches by
    surname); the numbers of each kind."""
    rows: list[Row] = []
    for entry in entries:
        names = (entry.get(name) for name in ("company", "given_name", "surname"))
        text = " ".join([entry.display_name, *(v for v in names if isinstance(v, str))])
        kinds = tuple(entry.get(kind) for kind in NUMBER_KINDS)
        rows.append((text, kinds))  # type: ignore[arg-type]  # number fields are tuples
    return rows


def build(rows: Sequence[Row], numbers: NumberFormat, home: str, known: bytes) -> Tables:
    """The tables over `rows` (here or in a worker: see build_anywhere)."""
    readings: dict[str, Reading] = {}
    previous: dict[str, Reading] = pickle.loads(known) if known else {}
    pairs: list[tuple[str, int]] = []
    runs: list[str] = []
    by_e164: dict[str, int] = {}
    by_raw: dict[str, int] = {}
    by_national: dict[str, int] = {}
    for rank, (text, kinds) in enumerate(rows):
        pairs.extend((word, rank) for word in set(words_of(text)))
        forms: list[str] = []
        for kind, shown_numbers in enumerate(kinds):
            for position, shown in enumerate(shown_numbers):
                number = sip_user(shown) if NUMBER_KINDS[kind] == "sip_address" else shown
                raw = dialled(number)
                if not raw:
                    continue
                matched = previous[number] if number in previous else numbers.matchable(number)
                readings[number] = matched
                # The digits as shown (`+49 (0)30 …`, an extension after the number, an
                # outside-line prefix) and, where they differ, the E.164 digits.
                digits = raw.lstrip("+").replace("*", "").replace("#", "")
                forms.append(digits)
                if matched and matched[0][1:] != digits:
                    forms.append(matched[0][1:])
                if position >= 1 << _POSITION_BITS:
                    continue  # searchable still; a lookup cannot name the 65,537th number
                found = code(rank, kind, position)
                if matched:
                    e164, national = matched
                    by_e164.setdefault(e164, found)
                    if e164.startswith(home):  # another country's is no local number
                        by_national.setdefault(national, found)
                    if raw == e164:
                        raw = e164  # the same string object: kept once in memory
                by_raw.setdefault(raw, found)
        runs.append(" ".join(forms))
    pairs.sort()
    words: list[str] = []
    word_starts = array("I")
    for position, (word, _) in enumerate(pairs):
        if not words or words[-1] != word:
            words.append(word)
            word_starts.append(position)
    word_starts.append(len(pairs))
    starts = array("I")
    offset = 0
    for run in runs:
        starts.append(offset)
        offset += len(run) + 1
    return Tables(
        words,
        word_starts,
        array("I", (rank for _, rank in pairs)),
        SEPARATOR.join(runs),
        starts,
        Table.of(by_e164),
        Table.of(by_raw),
        Table.of(by_national),
        pickle.dumps(readings, protocol=pickle.HIGHEST_PROTOCOL),
    )


def build_anywhere(rows: list[Row], numbers: NumberFormat, home: str, known: bytes) -> Tables:
    """build(), in a worker process for a big book. Rows go there and tables come back
    pickled piece by piece, so this (threaded) process never holds the GIL for long."""
    if len(rows) < ELSEWHERE_FROM:
        return build(rows, numbers, home, known)
    sent = [_dumps(rows[i : i + _PIECE]) for i in range(0, len(rows), _PIECE)]
    pieces = run_elsewhere(
        _build_elsewhere, sent, (numbers.style, numbers.region, numbers.prefix), home, known
    )
    del sent
    with bulk():
        tables = _tables_from(pieces)
    del pieces
    give_back()  # the pieces' bytes, tens of MB
    return tables


def _build_elsewhere(
    sent: list[bytes], number_format: tuple[str, str | None, str], home: str, known: bytes
) -> list[bytes]:
    rows: list[Row] = []
    gc.disable()  # a worker of its own, gone after this build: nothing to collect for
    for piece in sent:
        rows.extend(pickle.loads(piece))
    tables = build(rows, NumberFormat(*number_format), home, known)  # type: ignore[arg-type]
    pieces = [_dumps(("haystack", tables.haystack)), _dumps(("readings", tables.readings))]
    for name in ("word_starts", "word_ranks", "starts"):
        pieces.append(_dumps((name, getattr(tables, name))))
    pieces.extend(_dumps(("words", piece)) for piece in _sliced(tables.words))
    for name in ("by_e164", "by_raw", "by_national"):
        table: Table = getattr(tables, name)
        pieces.append(_dumps((f"{name}.values", table.values)))
        pieces.extend(_dumps((f"{name}.keys", piece)) for piece in _sliced(table.keys))
    return pieces


def _tables_from(pieces: list[bytes]) -> Tables:
    parts: dict[str, object] = {}
    lists: dict[str, list[str]] = {}
    for piece in pieces:
        name, value = pickle.loads(piece)
        if isinstance(value, list):
            lists.setdefault(name, []).extend(value)
        else:
            parts[name] = value

    def table(name: str) -> Table:
        return Table(lists.get(f"{name}.keys", []), parts[f"{name}.values"])  # type: ignore[arg-type]

    return Tables(
        lists.get("words", []),
        parts["word_starts"],  # type: ignore[arg-type]
        parts["word_ranks"],  # type: ignore[arg-type]
        parts["haystack"],  # type: ignore[arg-type]
        parts["starts"],  # type: ignore[arg-type]
        table("by_e164"),
        table("by_raw"),
        table("by_national"),
        parts["readings"],  # type: ignore[arg-type]
    )


def _sliced(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _PIECE):
        yield items[start : start + _PIECE]


def _dumps(value: object) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
