"""A composed document as formats read it: the entries it lists (in order, within the
cap), and search and lookup over every contact of the composition, cap or not, through an
index built the first time one is asked for and kept with the composition."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import overload

from gateway.entry import Entry
from gateway.numbers import NumberFormat
from gateway.search_index import Match, SearchIndex


class Directory(Sequence[Entry]):
    def __init__(
        self, listed: Sequence[Entry], everyone: Sequence[Entry], numbers: NumberFormat
    ) -> None:
        self._listed = listed
        self._everyone = everyone
        self._numbers = numbers
        self._index: SearchIndex | None = None
        self._building = threading.Lock()

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
        """Every contact of the composition in the document's order, the cap aside."""
        return self._everyone

    @property
    def numbers(self) -> NumberFormat:
        """How the document shows numbers (and reads them: default region, prefix)."""
        return self._numbers

    @property
    def indexed(self) -> bool:
        return self._index is not None

    def search_index(self) -> SearchIndex:
        """The index, built once (by whichever caller comes first; the others wait)."""
        if self._index is None:
            with self._building:
                if self._index is None:
                    self._index = SearchIndex(self._everyone, self._numbers)
        return self._index

    def search(self, term: str) -> Sequence[Entry]:
        return self.search_index().search(term)

    def lookup(self, number: str) -> Match | None:
        return self.search_index().lookup(number)
