"""Gigaset's phonebook search protocol (N510, N720, N870 and their handsets): the phone is
given the URL ending in `?` and appends `command=get_list&type=pb&fn=…&ln=…&hm=…&first=1
&count=…`; the answer is `<list response="get_list" type="pb" total first last>` with one
`<entry id>` per person, or `<list … notfound="…" total="0"/>`.

What is assumed, since Gigaset's protocol spec was not read (facts M/L from Wazo and
community servers, shared/reference/phone-formats.md §6):

- Fields: `ln` surname, `fn` given name (a card with neither: its display name as `ln`),
  `hm` the fixed number (the first business number, else the first home number), `mb` the
  first mobile number, `em` the e-mail address. A card's further numbers and its SIP
  addresses are not listed (one `hm` and one `mb` per entry); a card with neither a fixed
  nor a mobile number is left out. `nr` is the house number: we know no addresses, so
  `st`, `nr`, `zc`, `ct` are never listed. `id` is the entry's position in the answer.
- Search fields are ANDed; an empty field or one of stars only (`fn=*`) asks nothing.
  - `fn`, `ln`, `em`, `sip`: case and accents ignored; what is typed is a beginning (the
    end is never anchored); without a leading star it starts a word of the field
    (`ln=Mü*` finds Müller and Müller-Straße, `ln=str` finds Müller-Straße too); with
    one it is anywhere (`ln=*ll`); inner stars skip anything (`ln=M*r`). `ln` also
    matches the company: the phone has no field for it.
  - `hm` (any fixed or mobile number: the phone's reverse search puts the caller's
    number there), `mb` (mobile numbers only): digits, separators ignored. Without
    stars, the same number: the gateway's caller-ID lookup (E.164, extension, national
    number) or the same digits, national and international spellings alike when the
    document has a default region. With stars, position counts: `0301*` begins so,
    `*1234` ends so, `*1234*` anywhere.
  - `fx`, `ct`, `st`, `nr`, `zc` with a pattern: nobody (we know no fax numbers nor
    addresses); `notfound` names the first field that narrowed the search.
- Wildcards are matched by `str.find` part after part, never as a regular expression: a
  flood of stars costs nothing and nothing can backtrack.
- A search looks at the whole composition (the `max_entries` cap aside); listing all
  (no field narrows) pages through the document's entries. `set_first` (Wazo's reading:
  a name prefix, stars dropped) searches as every format's `q` does.
- `first` is 1-based (0 read as 1), `count` at most MAX_COUNT (0 or none: MAX_COUNT); a
  page past the end is `total` alone. `limit`, `mac`, `lang`, `reqsrc` are not read.
- Refusals are the protocol's own answer, `<error response type><errorid>` (HTTP 200, so
  the handset shows its message): 1 (not allowed) for any command but `get_list` (the
  book is read-only), 2 (syntax error) for a `first`/`count` that is no whole number,
  7 (format not available) for a `type` other than `pb` or `pr` (both get the same book).
- No parameters at all (a browser): the whole list in one answer. `q`, `offset`, `limit`
  without the protocol's parameters: every format's search and paging.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache

import phonenumbers
from lxml import etree
from phonenumbers import PhoneMetadata

from gateway.directory import Directory
from gateway.entry import Entry
from gateway.formats import XML_TYPE, BadQuery, Query
from gateway.formats.search import select
from gateway.formats.xmlout import child, document, first_last, numbers
from gateway.numbers import NumberFormat
from gateway.text import fold, words_of
from gateway.xcap.xml import xml_text

#: The search fields in the order the phone sends them (`notfound` names the first).
FIELDS = ("fn", "ln", "ct", "st", "hm", "nr", "mb", "fx", "sip", "zc", "em")
#: The most entries one answer holds, whatever `count` asks.
MAX_COUNT = 100
TYPES = ("pb", "pr")
NOT_ALLOWED, SYNTAX_ERROR, NOT_AVAILABLE = "1", "2", "7"
#: Number field -> the kinds of number it searches.
NUMBER_FIELDS = {
    "hm": ("business_number", "home_number", "mobile_number"),
    "mb": ("mobile_number",),
    "fx": (),
}
_DIGITS = frozenset("0123456789")

Test = Callable[[Entry], bool]


class Refused(Exception):
    """A request the protocol answers with `<error>`: the errorid, and the command and
    type it echoes."""

    def __init__(self, errorid: str, command: str, kind: str) -> None:
        super().__init__(errorid)
        self.errorid, self.command, self.kind = errorid, command, kind


class GigasetDirectory:
    name = "gigaset"
    content_type = XML_TYPE
    #: `limit` too: the handsets send limit=2048, which is theirs, not our page size.
    parameters = frozenset({"command", "type", "first", "count", "set_first", "limit", *FIELDS})

    def render(self, entries: Sequence[Entry], query: Query) -> bytes:
        if not query.params.keys() - {"limit"}:  # not the protocol: q, offset, limit
            found = select(entries, Query(q=query.q)).entries if query.q else entries
            limit = query.params.get("limit", "")
            if limit and not (limit.isascii() and limit.isdigit() and 0 < int(limit) <= 10**6):
                raise BadQuery("limit is a whole number from 1")
            return _answer("pb", _listable(found), query.offset, int(limit or 0) or None, "ln")
        try:
            return _get_list(entries, query.params)
        except Refused as refused:
            root = etree.Element(
                "error", response=xml_text(refused.command), type=xml_text(refused.kind)
            )
            child(root, "errorid", refused.errorid)
            return document(root)


def _get_list(entries: Sequence[Entry], params: Mapping[str, str]) -> bytes:
    def get(name: str) -> str:
        return params.get(name, "").strip()

    command, kind = get("command") or "get_list", get("type") or "pb"
    if command != "get_list":
        raise Refused(NOT_ALLOWED, command, kind)
    if kind not in TYPES:
        raise Refused(NOT_AVAILABLE, command, kind)
    first = max(_whole(get("first"), 1, command, kind), 1)
    count = min(_whole(get("count"), 0, command, kind) or MAX_COUNT, MAX_COUNT)
    tests = [(f, test) for f in FIELDS if (test := _test(f, get(f), entries)) is not None]
    term = get("set_first").replace("*", "").strip()
    pool: Sequence[Entry] = entries
    if term:
        pool = select(entries, Query(q=term)).entries
    elif tests and isinstance(entries, Directory):
        # A search looks past the cap; the index narrows it to the candidates first.
        pool = _candidates(entries, {f: get(f) for f, _ in tests})
    found = _listable(e for e in pool if all(test(e) for _, test in tests))
    return _answer(kind, found, first - 1, count, tests[0][0] if tests else "ln")


def _candidates(directory: Directory, asked: Mapping[str, str]) -> Sequence[Entry]:
    """Every entry that can match the fields asked, in order: what the index finds for
    the first piece of each name and number pattern (the index holds the words of names
    and companies and the digits of numbers, so it finds a superset); everyone when no
    field can be narrowed so (an e-mail, a pattern of stars and digits in a name)."""
    found: Sequence[Entry] | None = None
    for field, value in asked.items():
        piece = next((p for p in value.split("*") if p.strip()), "")
        starts_word = not value.lstrip().startswith("*")  # else it is anywhere: no index
        if field in ("fn", "ln") and starts_word and any(c.isalpha() for c in piece):
            term = " ".join(words_of(piece))
        elif field in NUMBER_FIELDS and (digits := "".join(c for c in piece if c in _DIGITS)):
            term = digits
            if "*" not in value and (match := directory.lookup(value)) is not None:
                extra = match.entry  # the caller-ID lookup's answer counts too
                hits = directory.search(term)
                found = _narrow(found, [*hits, extra] if extra not in hits else hits)
                continue
        else:
            continue
        found = _narrow(found, directory.search(term))
    return directory.everyone if found is None else found


def _narrow(found: Sequence[Entry] | None, more: Sequence[Entry]) -> Sequence[Entry]:
    if found is None:
        return more
    keep = {entry.entry_id for entry in more}
    return [entry for entry in found if entry.entry_id in keep]


def _whole(value: str, default: int, command: str, kind: str) -> int:
    if not value:
        return default
    if not value.isascii() or not value.isdigit():
        raise Refused(SYNTAX_ERROR, command, kind)
    return int(value)  # at most 100 digits (the view's limit): quick


def _answer(
    kind: str, found: Sequence[Entry], start: int, count: int | None, notfound: str
) -> bytes:
    root = etree.Element("list", response="get_list", type=kind)
    if not found:
        root.set("notfound", notfound)
        root.set("total", "0")
        return document(root)
    root.set("total", str(len(found)))
    page = found[start:] if count is None else found[start : start + count]
    if page:
        root.set("first", str(start + 1))
        root.set("last", str(start + len(page)))
    for position, entry in enumerate(page, start + 1):
        item = child(root, "entry", id=str(position))
        for tag, text in fields(entry):
            child(item, tag, text)
    return document(root)


def fields(entry: Entry) -> list[tuple[str, str]]:
    """(field code, text) as the entry is listed: `ln`, `fn`, `hm`, `mb`, `em`."""
    listed = list(numbers(entry))
    fixed = _first(listed, "business_number") or _first(listed, "home_number")
    mobile = _first(listed, "mobile_number")
    given, surname = first_last(entry)
    if not given and not surname:
        surname = fixed or mobile  # a card without any name: at least one is shown
    email = str(entry.get("email_address") or "")
    found = [("ln", surname), ("fn", given), ("hm", fixed), ("mb", mobile), ("em", email)]
    return [(tag, text) for tag, text in found if text]


def _first(listed: list[tuple[str, str]], kind: str) -> str:
    return next((number for k, number in listed if k == kind), "")


def _listable(entries: Iterable[Entry]) -> list[Entry]:
    """The entries with a fixed or mobile number: the others have nothing to dial."""
    return [e for e in entries if any(k in NUMBER_FIELDS["hm"] for k, _ in numbers(e))]


def _test(field: str, value: str, entries: Sequence[Entry]) -> Test | None:
    """What an entry must satisfy for the field's pattern; None when it asks nothing."""
    if not value.replace("*", "").strip():
        return None
    if field in NUMBER_FIELDS:
        return _number_test(field, value, entries)
    if field in ("fn", "ln", "em", "sip"):
        # Folded first: a full-width star is a star, a lone accent is nothing at all.
        if not fold(value).replace("*", "").strip():
            return None
        return _text_test(field, value)
    return _nobody  # an address: we know none


def _nobody(entry: Entry) -> bool:
    return False


# -- text ---------------------------------------------------------------------------------

_folded = lru_cache(maxsize=1 << 16)(fold)


def _texts(field: str, entry: Entry) -> tuple[str, ...]:
    if field == "fn":
        return (first_last(entry)[0],)
    if field == "ln":
        return (first_last(entry)[1], str(entry.get("company") or ""))
    if field == "em":
        return (str(entry.get("email_address") or ""),)
    return tuple(entry.get("sip_address"))


def _text_test(field: str, value: str) -> Test:
    pattern = fold(value)
    open_start = pattern.startswith("*")
    parts = tuple(part for part in pattern.split("*") if part)

    def test(entry: Entry) -> bool:
        for text in _texts(field, entry):
            folded = _folded(text)
            if parts[0] in folded and glob(folded, parts, open_start, True, word_starts(folded)):
                return True
        return False

    return test


def word_starts(text: str) -> tuple[int, ...]:
    return tuple(
        i for i, c in enumerate(text) if c.isalnum() and (i == 0 or not text[i - 1].isalnum())
    )


def glob(
    text: str,
    parts: Sequence[str],
    open_start: bool,
    open_end: bool,
    anchors: Sequence[int] = (0,),
) -> bool:
    """The parts appear in `text` in this order without overlapping: the first at one of
    `anchors` unless `open_start`, the last at the end unless `open_end`. Each part is
    found once with `str.find`, from where the one before ended (the leftmost place is
    always the best one), so a pattern cannot backtrack."""
    if not parts:
        return True
    stop = len(text)
    if not open_end:
        *parts, last = parts
        if not text.endswith(last):
            return False
        stop -= len(last)
        if not parts:
            return open_start or stop in anchors
    first, *rest = parts
    if open_start:
        at = text.find(first, 0, stop)
    else:
        at = next((a for a in anchors if text.startswith(first, a, stop)), -1)
    if at < 0:
        return False
    at += len(first)
    for part in rest:
        at = text.find(part, at, stop)
        if at < 0:
            return False
        at += len(part)
    return True


# -- numbers ------------------------------------------------------------------------------


def _number_test(field: str, value: str, entries: Sequence[Entry]) -> Test:
    kinds = NUMBER_FIELDS[field]
    style = _number_format(entries)
    pieces = ["".join(c for c in piece if c in _DIGITS) for piece in value.split("*")]
    parts = tuple(piece for piece in pieces if piece)
    if not kinds or not parts:
        return _nobody
    open_start, open_end = value.startswith("*"), value.endswith("*")
    spellings = [parts] if open_start else _spellings(value, parts, style)
    hit = ""
    if "*" not in value and isinstance(entries, Directory):
        match = entries.lookup(value)
        if match is not None and (field == "hm" or match.kind == "mobile"):
            hit = match.entry.entry_id  # the caller-ID lookup's answer counts too

    def test(entry: Entry) -> bool:
        if hit and entry.entry_id == hit:
            return True
        for kind, number in numbers(entry):
            if kind in kinds:
                digits = number_digits(number, style)
                if any(glob(digits, s, open_start, open_end) for s in spellings):
                    return True
        return False

    return test


def _number_format(entries: Sequence[Entry]) -> NumberFormat | None:
    return entries.numbers if isinstance(entries, Directory) else None


def number_digits(number: str, style: NumberFormat | None) -> str:
    """A listed number's digits, without an outside-line prefix and an international
    `00` (`+49 30 1234` and `0049 30 1234` -> `49301234`; `030 1234` -> `0301234`)."""
    text = number.strip()
    if style is not None and style.style == "national" and style.prefix:
        text = text.removeprefix(style.prefix)
    digits = "".join(c for c in text if c in _DIGITS)
    return digits[2:] if digits.startswith("00") else digits


def _spellings(
    value: str, parts: tuple[str, ...], style: NumberFormat | None
) -> list[tuple[str, ...]]:
    """The pattern as typed and, with a default region, its beginning the other way round:
    national `030 1…` also as `49301…`, international `+49 30 1…` also as `0301…`."""
    first = parts[0]
    international = value.startswith("+") or first.startswith("00")
    first = first[2:] if first.startswith("00") else first
    spellings = {first}
    region = style.region if style is not None else None
    metadata = PhoneMetadata.metadata_for_region(region) if region else None
    trunk = metadata.national_prefix if metadata is not None else None
    if region and trunk:
        code = str(phonenumbers.country_code_for_region(region))
        if international and first.startswith(code):
            spellings.add(trunk + first[len(code) :])
        elif not international and first.startswith(trunk):
            spellings.add(code + first[len(trunk) :])
    # `00` alone (the international prefix, nothing after it yet) is no number: it
    # matches nobody rather than, as an empty pattern, everybody.
    found = [tuple(p for p in (spelling, *parts[1:]) if p) for spelling in sorted(spellings)]
    return [spelling for spelling in found if spelling]


FORMAT = GigasetDirectory()
