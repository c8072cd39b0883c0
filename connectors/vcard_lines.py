"""vCard content lines and cards, kept exactly as found so untouched lines can be written
back byte for byte. Parsing of each line and escaping come from vobject."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from vobject.base import ContentLine, ParseError, backslashEscape, parseLine
from vobject.icalendar import stringToTextValues

_CARD_START = re.compile(r"^BEGIN:VCARD\s*$", re.IGNORECASE)
_CARD_END = re.compile(r"^END:VCARD\s*$", re.IGNORECASE)
#: A line break and the white space that continues the line after it.
_FOLD = re.compile(r"\r?\n[ \t]")
#: A physical line, ending at LF (or CRLF) only.
_PHYSICAL = re.compile(r"[^\n]*\n|[^\n]+")


def physical_lines(text: str) -> list[str]:
    """`text` split after each LF, keeping the endings. Not str.splitlines: that also
    splits at VT, FF, FS/GS/RS, U+0085, U+2028 and U+2029, which a NOTE may contain and
    which end no vCard line."""
    return _PHYSICAL.findall(text)


#: What neither a vCard value nor XML 1.0 can carry: C0 controls but tab, LF and CR,
#: U+FFFE/U+FFFF, and lone surrogates (which UTF-8 cannot even encode).
_UNCARRIABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def text_values(value: str, separator: str | None = ",") -> list[str]:
    """A text value (or list of them, split at `separator`) unescaped, as vobject's
    stringToTextValues reads it; without a backslash there is nothing to unescape, and
    the split alone is what it does, much faster (most values of a card)."""
    if "\\" in value:
        return [str(v) for v in stringToTextValues(value, listSeparator=separator)]
    if separator is None:
        return [value]
    parts = value.split(separator)
    if len(parts) > 1 and not parts[-1]:
        parts.pop()  # vobject drops an empty last item ("a;b;" is two)
    return parts


def clean_text(text: str) -> str:
    """`text` as a vCard value can hold it: the characters above dropped, and CR or CRLF
    as LF, since a value escapes only newlines (`\\n`). clean_text(clean_text(t)) ==
    clean_text(t)."""
    return _UNCARRIABLE.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def encode_param(value: str) -> str:
    """`value` fit for a parameter value whatever it holds: every character but ASCII
    letters, digits and `-._~#` percent-encoded (UTF-8). A raw `"` cannot be written at
    all, and `;:,` or non-ASCII are read differently by different parsers."""
    return quote(value, safe="#", errors="surrogatepass")


def decode_param(value: str) -> str:
    """The inverse of encode_param for text. A value that is not in encode_param's form
    (written before we encoded, like `50%` or `a b`), or whose octets are not UTF-8 text
    (`%ED%A0%80` is a lone surrogate, which nothing downstream can store or send), is
    returned as it is."""
    try:
        decoded = unquote(value, errors="strict")
    except UnicodeDecodeError:
        return value
    return decoded if encode_param(decoded) == value else value


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
        # Unfolded before the line end is taken off (a stray CR before a fold stays out
        # of the value); a line with no break but its last has nothing to unfold.
        unfolded = _FOLD.sub("", raw) if "\n" in raw[:-1] else raw
        logical = unfolded.rstrip("\r\n")
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

    def param_text(self, name: str) -> str | None:
        """The value of parameter `name` as written (list items joined by commas, nothing
        stripped); None when the line has no such parameter."""
        for param in self.params:
            if param[0].upper() == name:
                return ",".join(value or "" for value in param[1:])
        return None

    def types(self) -> set[str]:
        """TYPE values, plus vCard 2.1-style bare parameters like `TEL;CELL:`."""
        bare = {p[0].lower() for p in self.params if len(p) == 1 or p[1:] == [None]}
        return {t.lower() for t in self.param("TYPE")} | bare

    def text(self) -> str:
        return text_values(self.value, None)[0]

    def components(self, count: int) -> list[str]:
        parts = text_values(self.value, ";")
        return (parts + [""] * count)[: max(count, len(parts))]


@dataclass
class Card:
    lines: list[Line]
    newline: str = "\r\n"

    @classmethod
    def parse(cls, text: str) -> Card:
        newline = "\r\n" if "\r\n" in text else "\n"
        chunks: list[str] = []
        for physical in physical_lines(text):
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
        # The UID escaped like text, as it is read: nothing in it can end the line.
        lines = [
            ("BEGIN", "VCARD"),
            ("VERSION", version),
            ("UID", backslashEscape(clean_text(uid))),
        ]
        if version == "3.0":
            lines.append(("N", ";;;;"))  # required in 3.0, even when empty
        for name, value in [*lines, ("END", "VCARD")]:
            card.lines.append(card.make_line(name, [], value, None))
        return card

    def text(self) -> str:
        return "".join(line.raw for line in self.lines)

    def etag(self) -> str:
        return _digest(self.text())

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
        logical = ContentLine(name, params, value, group=group, encoded=True).serialize(
            lineLength=_UNFOLDED
        )
        return Line(fold(logical.removesuffix("\r\n"), self.newline), name, params, value, group)


def card_etag(text: str) -> str:
    """Card.parse(text).etag() without the parse: the text of one card (a split_cards
    segment), ended with a line break as Card.parse ends it."""
    if text and not text.endswith(("\n", "\r")):
        text += "\r\n" if "\r\n" in text else "\n"
    return _digest(text)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


#: Long enough that vobject never folds: it measures its short lines in characters, not
#: octets, so a line of 60 non-ASCII characters went out 120 octets long.
_UNFOLDED = 1 << 30


def fold(logical: str, newline: str = "\r\n", octets: int = 75) -> str:
    """`logical` folded into lines of at most `octets` UTF-8 octets (the continuation's
    leading space included), never inside a character; ends with `newline`."""
    lines: list[str] = []
    current: list[str] = []
    size = 0
    for char in logical:
        width = len(char.encode("utf-8", "surrogatepass"))
        if size + width > octets:
            lines.append("".join(current))
            current, size = [" "], 1
        current.append(char)
        size += width
    lines.append("".join(current))
    return newline.join(lines) + newline


def split_cards(text: str) -> list[tuple[bool, str]]:
    """The file as segments: (True, card text) for each card, (False, text) in between."""
    segments: list[tuple[bool, str]] = []
    buffer: list[str] = []
    inside = False
    for physical in physical_lines(text):
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
