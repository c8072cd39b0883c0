"""Directories of one line per number (Cisco's and Snom's minibrowser objects hold one
`Telephone` per entry): the lines of a contact, named `Name`, `Name (mobile)`,
`Name (work 2)`; a page of lines from `offset`; links to other pages of the same URL."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from gateway.entry import Entry, without_separators
from gateway.formats import Query
from gateway.formats.search import select
from gateway.formats.xmlout import numbers

#: The longest number a line dials: a cut number dials someone else, so longer is left out.
MAX_NUMBER = 32

#: Our number kinds as the word after a contact's later lines.
KIND_WORDS = {
    "business_number": "work",
    "mobile_number": "mobile",
    "home_number": "home",
    "sip_address": "SIP",
}

#: (kind, number) -> what the phone dials, or "" when it cannot dial it.
Dial = Callable[[str, str], str]

_DIALABLE = re.compile(r"\+?[0-9*#]+")


@dataclass(frozen=True)
class Line:
    """One `DirectoryEntry`: the name shown and the number dialled."""

    name: str
    number: str


@dataclass(frozen=True)
class LinePage:
    """The lines of one page, where it starts, its size, and the pages around it
    (`previous`: the offset of the page before, None on the first page)."""

    lines: list[Line]
    offset: int
    limit: int
    more: bool
    previous: int | None


def dialable_number(kind: str, number: str) -> str:
    """`number` without separators when it is digits, `*`, `#` and a leading `+` of at most
    32 characters; "" for anything else (SIP addresses included). Digits of other scripts
    (full-width `４`, Arabic-Indic `٤`) are read as the digits they are: a keypad has only
    ASCII ones."""
    cleaned = without_separators(ascii_digits(number))
    return cleaned if _DIALABLE.fullmatch(cleaned) and len(cleaned) <= MAX_NUMBER else ""


def ascii_digits(text: str) -> str:
    """`text` with every decimal digit written in ASCII (full-width `４`, Arabic-Indic `٤`)
    and full-width `＋ ＊ ＃` as ASCII; other characters as they are (a superscript `²` or
    a circled `①` is no digit to dial, and leaves the number undialable)."""
    return "".join(
        str(unicodedata.decimal(c)) if c.isdecimal() else _FULL_WIDTH.get(c, c) for c in text
    )


_FULL_WIDTH = {"＋": "+", "＊": "*", "＃": "#"}


def line_name(name: str, suffix: str, cap: int | None) -> str:
    """`name` on one line with `suffix` after it, the name cut so that both fit in `cap`."""
    name = " ".join(name.split())
    if cap is not None and len(name) + len(suffix) > cap:
        name = name[: max(cap - len(suffix), 0)].rstrip()
    return name + suffix


def targets_of(entry: Entry, dial: Dial) -> list[tuple[str, str]]:
    """(kind, what the phone dials) for every number of `entry` that `dial` accepts, each
    once, in the order of `numbers`."""
    found: dict[str, str] = {}
    for kind, number in numbers(entry):
        if (target := dial(kind, number)) and target not in found:
            found[target] = kind
    return [(kind, target) for target, kind in found.items()]


def lines_of(
    entry: Entry, targets: list[tuple[str, str]], max_name: int | None = None
) -> Iterator[Line]:
    """A line for each of `entry`'s `targets`: the first under the name, the later ones
    with their kind (and a count when the kind came before)."""
    kinds: Counter[str] = Counter()
    for n, (kind, target) in enumerate(targets):
        word = KIND_WORDS[kind]
        kinds[word] += 1
        if n == 0:
            suffix = ""
        elif kinds[word] == 1:
            suffix = f" ({word})"
        else:
            suffix = f" ({word} {kinds[word]})"
        yield Line(line_name(entry.display_name or target, suffix, max_name), target)


def line_page(
    entries: Sequence[Entry],
    query: Query,
    page_size: int,
    dial: Dial,
    max_name: int | None = None,
) -> LinePage:
    """The lines `query` asks for: the entries matching `q` (the whole composition), one line
    per number, from line `offset`, at most `limit` of them and never more than
    `page_size`."""
    limit = min(query.limit or page_size, page_size)
    start, stop = query.offset, query.offset + limit
    page: list[Line] = []
    seen = 0
    more = False
    for entry in select(entries, Query(q=query.q)).entries:
        targets = targets_of(entry, dial)
        if seen + len(targets) <= start:  # a page before: counted, not named
            seen += len(targets)
            continue
        for line in lines_of(entry, targets, max_name):
            if seen == stop:
                more = True
                break
            if seen >= start:
                page.append(line)
            seen += 1
        if more:
            break
    # Past the end, Previous leads to the last page rather than to another empty one.
    previous = max(min(start, seen) - limit, 0) if start else None
    return LinePage(page, start, limit, more, previous)


def link(query: Query, **params: str | int) -> str:
    """This request's path with `params` as its query string (`q` kept when set)."""
    if query.q and "q" not in params:
        params = {"q": query.q, **params}
    return f"{query.url}?{urlencode(params)}" if params else query.url


def title_of(query: Query, cap: int | None = None) -> str:
    """`Directory`, or what was searched for."""
    title = f"Search: {' '.join(query.q.split())}" if query.q else "Directory"
    return title if cap is None else title[:cap].rstrip()


def prompt_of(page: LinePage, query: Query) -> str:
    if page.lines:
        return f"Lines {page.offset + 1}-{page.offset + len(page.lines)}"
    return "No match" if query.q else "No entries"
