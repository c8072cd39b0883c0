"""Snom's minibrowser directory (firmware before the Remote XML Directory; D8xx context
keys): a `SnomIPPhoneDirectory` page the phone fetches when the key is pressed, and a
`SnomIPPhoneInput` for search. One URL answers both, named by `form` (any other value is
400):

- no `form`: a page of `DirectoryEntry`s (`Name`, `Telephone`) with `Title`, `Prompt` and
  `SoftKeyItem`s (`Name` the key, `Label`, `URL`): F1 Search, F2 Previous (past the first
  page), F4 Next (when lines follow); F3 is left to the phone;
- `form=search`: a `SnomIPPhoneInput` whose `Url` is this path with `q=__Q__`; the phone
  puts what the user typed in place of every `__Q__` (`InputToken`; another token when the
  path itself holds that one) and GETs it. `InputFlags` `a` (text; digits find numbers);
  the search of the page it was opened from is pre-filled.

What is decided here:

- One entry per number, named as Cisco's are (`gateway.formats.lines`): the first number
  under the name, later ones `Name (mobile)`, `Name (work 2)`, `Name (SIP)`. `offset` and
  `limit` count these lines, and a page has at most 50 (`limit` may ask for fewer): the
  phone's speed-select (a digit key jumps to that line) handles at most 100 lines, and 50
  keeps each fetch small while a search narrows a long list faster than paging does.
  `speedselect="select"` moves to the line without dialling it (`enter` would call at the
  press of one digit).
- `Telephone` is trimmed (the phone writes surrounding spaces into the SIP URI as `%20`)
  and loses its spaces, dashes, dots, slashes and brackets; the phone makes
  `sip:<number>@<registrar>` of it. A number is left out as for Cisco (anything but
  digits, `*`, `#` and a leading `+` left, or more than 32 characters); a SIP address is
  dialled as a `sip:` URI (the scheme added when the card has none), unless it holds
  white space. Snom documents no length for `Name`: names are one line, not cut.
- Links are the request's own absolute URL (`Query.url`) with `q`, `offset` and `limit`.
- Not confirmed: whether the phone percent-encodes what is typed before it GETs the URL.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from gateway.entry import Entry
from gateway.formats import XML_TYPE, BadQuery, Query
from gateway.formats.lines import dialable_number, line_page, link, prompt_of, title_of
from gateway.formats.xmlout import child, document

#: Lines per page (speed-select handles at most 100).
PAGE_SIZE = 50
#: What the phone replaces with the user's input in the search URL.
TOKEN = "__Q__"


def snom_number(kind: str, number: str) -> str:
    """What the phone dials for `number`: a SIP address as a `sip:` URI, a telephone
    number without separators; "" when it cannot dial it."""
    if kind == "sip_address":
        if not number or any(c.isspace() for c in number):
            return ""
        return number if number.lower().startswith(("sip:", "sips:")) else f"sip:{number}"
    return dialable_number(kind, number)


def token_for(url: str) -> str:
    """An input token that appears nowhere in `url` (the phone replaces every occurrence)."""
    token, n = TOKEN, 0
    while token.lower() in url.lower():
        n += 1
        token = f"__Q{n}__"
    return token


def _soft_key(root: etree._Element, key: str, label: str, url: str) -> None:
    item = child(root, "SoftKeyItem")
    child(item, "Name", key)
    child(item, "Label", label)
    child(item, "URL", url)


def directory(entries: Sequence[Entry], query: Query) -> etree._Element:
    page = line_page(entries, query, PAGE_SIZE, snom_number)
    root = etree.Element("SnomIPPhoneDirectory", speedselect="select")
    child(root, "Title", title_of(query))
    child(root, "Prompt", prompt_of(page, query))
    for line in page.lines:
        item = child(root, "DirectoryEntry")
        child(item, "Name", line.name)
        child(item, "Telephone", line.number)
    _soft_key(root, "F1", "Search", link(query, form="search"))
    if page.previous is not None:
        _soft_key(root, "F2", "Previous", link(query, offset=page.previous, limit=page.limit))
    if page.more:
        _soft_key(
            root, "F4", "Next", link(query, offset=page.offset + page.limit, limit=page.limit)
        )
    return root


def search_input(query: Query) -> etree._Element:
    token = token_for(query.url)
    root = etree.Element("SnomIPPhoneInput")
    child(root, "Title", "Search")
    child(root, "Prompt", "Name or number")
    child(root, "Url", f"{query.url}?q={token}")
    item = child(root, "InputItem")
    child(item, "DisplayName", "Name or number")
    child(item, "InputToken", token)
    child(item, "DefaultValue", query.q)
    child(item, "InputFlags", "a")
    return root


class SnomBrowserDirectory:
    name = "snom-browser"
    content_type = XML_TYPE
    searchable = True
    #: The object asked for besides the directory: `search`.
    parameters = ("form",)
    #: Paging and search links hold the URL the page was fetched from.
    uses_url = True

    def render(self, entries: Sequence[Entry], query: Query) -> bytes:
        form = query.params.get("form", "")
        if form == "search":
            return document(search_input(query))
        if form:
            raise BadQuery("form is search")
        return document(directory(entries, query))


FORMAT = SnomBrowserDirectory()
