"""vCard content lines and cards, kept exactly as found so untouched lines can be written
back byte for byte. Parsing of each line and escaping come from vobject."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from vobject.base import ContentLine, ParseError, parseLine
from vobject.icalendar import stringToTextValues

_CARD_START = re.compile(r"^BEGIN:VCARD\s*$", re.IGNORECASE)
_CARD_END = re.compile(r"^END:VCARD\s*$", re.IGNORECASE)


@dataclass(eq=False)  # lines are compared by identity: two may read the same
class Line:
    """One content line: `raw` exactly as found (folded, with its line ending)."""

    raw: str
    name: str = ""
    params: list[list[str]] = field(default_factory=list)
    value: str = ""
    group: str | None = None

    @classmethod
    def parse(cls, raw: str) -> Line:
        logical = re.sub(r"\r?\n[ \t]", "", raw).rstrip("\r\n")
        try:
            name, params, value, group = parseLine(logical)
        except ParseError:
            return cls(raw)
        return cls(raw, name.upper(), [list(p) for p in params], value, group)

    def param(self, name: str) -> list[str]:
        values: list[str] = []
        for param in self.params:
            if param[0].upper() == name:
                for value in param[1:]:
                    values.extend(v.strip() for v in value.split(","))
        return values

    def types(self) -> set[str]:
        """TYPE values, plus vCard 2.1-style bare parameters like `TEL;CELL:`."""
        bare = {p[0].lower() for p in self.params if len(p) == 1 or p[1:] == [None]}
        return {t.lower() for t in self.param("TYPE")} | bare

    def text(self) -> str:
        return str(stringToTextValues(self.value, listSeparator=None)[0])

    def components(self, count: int) -> list[str]:
        parts = [str(p) for p in stringToTextValues(self.value, listSeparator=";")]
        return (parts + [""] * count)[: max(count, len(parts))]


@dataclass
class Card:
    lines: list[Line]
    newline: str = "\r\n"

    @classmethod
    def parse(cls, text: str) -> Card:
        newline = "\r\n" if "\r\n" in text else "\n"
        chunks: list[str] = []
        for physical in text.splitlines(keepends=True):
            if chunks and physical[:1] in (" ", "\t"):
                chunks[-1] += physical
            else:
                chunks.append(physical)
        if chunks and not chunks[-1].endswith(("\n", "\r")):
            chunks[-1] += newline
        return cls([Line.parse(chunk) for chunk in chunks], newline)

    @classmethod
    def new(cls, version: str, uid: str) -> Card:
        card = cls([], "\r\n")
        lines = [("BEGIN", "VCARD"), ("VERSION", version), ("UID", uid)]
        if version == "3.0":
            lines.append(("N", ";;;;"))  # required in 3.0, even when empty
        for name, value in [*lines, ("END", "VCARD")]:
            card.lines.append(card.make_line(name, [], value, None))
        return card

    def text(self) -> str:
        return "".join(line.raw for line in self.lines)

    def etag(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()[:32]

    def first(self, name: str) -> Line | None:
        return next((line for line in self.lines if line.name == name), None)

    @property
    def uid(self) -> str:
        line = self.first("UID")
        return line.text() if line else ""

    @property
    def version(self) -> str:
        line = self.first("VERSION")
        return line.value.strip() if line else "3.0"

    def make_line(self, name: str, params: list[list[str]], value: str, group: str | None) -> Line:
        raw = ContentLine(name, params, value, group=group, encoded=True).serialize()
        raw = raw.replace("\r\n", self.newline)
        return Line(raw, name, params, value, group)


def split_cards(text: str) -> list[tuple[bool, str]]:
    """The file as segments: (True, card text) for each card, (False, text) in between."""
    segments: list[tuple[bool, str]] = []
    buffer: list[str] = []
    inside = False
    for physical in text.splitlines(keepends=True):
        if not inside and _CARD_START.match(physical):
            if buffer:
                segments.append((False, "".join(buffer)))
            buffer, inside = [physical], True
            continue
        buffer.append(physical)
        if inside and _CARD_END.match(physical):
            segments.append((True, "".join(buffer)))
            buffer, inside = [], False
    if buffer:
        segments.append((False, "".join(buffer)))
    return segments
