"""A composed document as formats read it: the entries it lists (in order, within the
cap), and search and lookup over every contact of the composition, cap or not, through an
index built the first time one is asked for and kept with the composition."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Sequence
from typing import Any, overload

from gateway.entry import Entry
from gateway.numbers import NumberFormat
from gateway.search_index import Match, SearchIndex

#: Entries sorted at a time by `sorted_in_slices`.
SLICE = 4096


def sorted_in_slices(entries: Sequence[Entry], key: Callable[[Entry], Any]) -> list[Entry]:
    """sorted(entries, key=key), in a worker thread without stalling the event loop: one
    sort of 100k keys holds the interpreter lock for a tenth of a second or more, slices
    of SLICE a millisecond or two, and their merge lets go of it between entries."""
    keyed = [(key(entry), index, entry) for index, entry in enumerate(entries)]
    slices = [sorted(keyed[i : i + SLICE]) for i in range(0, len(keyed), SLICE)]
    return [entry for _, _, entry in heapq.merge(*slices)]


class Directory(Sequence[Entry]):
    def __init__(
        self,
        listed: Sequence[Entry],
        everyone: Sequence[Entry],
        numbers: NumberFormat,
        previous: Directory | None = None,
        order: Callable[[Entry], Any] | None = None,
    ) -> None:
        self._listed = listed
        #: Every contact in composition order; sorted into the document's order (`order`)
        #: when the index is built or `everyone` is asked for, never on the event loop
        #: while composing: the collation keys of 100k names take seconds.
        self._composed = everyone
        self._order = order
        self._everyone: Sequence[Entry] | None = None if order is not None else everyone
        self._numbers = numbers
        self._index: SearchIndex | None = None
        self._building = threading.Lock()
        #: The index of the composition before this one (or, if that one was still being
        #: built, the one it stood in for), answering while this one's is built ahead
        #: (`build_ahead`): a big book's takes seconds, and a PBX's lookup must not wait
        #: for it. An index object, not a Directory: no chain of compositions is kept.
        self._stand_in: SearchIndex | None = (
            (previous._index or previous._stand_in) if previous is not None else None
        )
        self._ahead = False

    @overload
    def __getitem__(self, index: int) -> Entry: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Entry]: ...
    def __getitem__(self, index: int | slice) -> Entry | Sequence[Entry]:
        return self._listed[index]

    def __len__(self) -> int:
        return len(self._listed)

    @property
    def everyone(self) -> Sequence[Entry]:
        """Every contact of the composition in the document's order, the cap aside
        (sorted at the first call: call it off the event loop)."""
        if self._everyone is None:
            assert self._order is not None  # set at once otherwise
            self._everyone = sorted_in_slices(self._composed, self._order)
        return self._everyone

    @property
    def size(self) -> int:
        """How many contacts the composition has, the cap aside."""
        return len(self._composed)

    @property
    def numbers(self) -> NumberFormat:
        """How the document shows numbers (and reads them: default region, prefix)."""
        return self._numbers

    @property
    def indexed(self) -> bool:
        return self._index is not None

    def build_ahead(self) -> Callable[[], None]:
        """From now on, until the index is built, searches and lookups read the previous
        composition's index (if it had one); the function returned builds it (run it in
        a worker thread)."""
        self._ahead = True

        def build() -> None:
            try:
                self._build()
            finally:
                self._ahead = False

        return build

    def search_index(self) -> SearchIndex:
        """The index, built once (by whichever caller comes first; the others wait, or
        while it is built ahead, read the previous composition's)."""
        if self._index is not None:
            return self._index
        stand_in = self._stand_in
        if self._ahead and stand_in is not None:
            return stand_in
        return self._build()

    def _build(self) -> SearchIndex:
        with self._building:
            if self._index is None:
                # Over the document's order (sorted here, off the event loop): matches
                # come out in it, and a number two contacts share finds the first.
                self._index = SearchIndex(self.everyone, self._numbers, self._stand_in)
                self._stand_in = None  # the old one can go
            return self._index

    def search(self, term: str) -> Sequence[Entry]:
        """Every entry matching `term`, in the document's order (the index's)."""
        return self.search_index().search(term)

    def lookup(self, number: str) -> Match | None:
        return self.search_index().lookup(number)
