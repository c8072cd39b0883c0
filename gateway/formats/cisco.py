"""Cisco's directory objects, as 79xx/89xx phones (`directoryURL`) and SPA/MPP phones
(`XML_Directory_Service_URL`) read them. One URL answers three objects, named by `form`
(any other value is 400):

- no `form`: a `CiscoIPPhoneDirectory` page: `Title`, `Prompt`, at most 32 `DirectoryEntry`s
  (Cisco's limit per object), each a `Name` and one `Telephone`, and soft keys;
- `form=search`: a `CiscoIPPhoneInput` whose `URL` is this path; the phone GETs it with
  `?q=` and what the user typed (`QueryStringParam` `q`, `InputFlags` `A`), which answers
  the first page of matches; the search of the page it was opened from is pre-filled;
- `form=menu`: a `CiscoIPPhoneMenu` (Search, All contacts), for an administrator who puts
  the URL under "URL Directories" or in a 79xx's `directoryURL`: there the first answer
  must be a menu.

What is decided here:

- One `DirectoryEntry` per number (the object has one `Telephone`), as Wazo does: a
  contact's first number under its name, each later one as `Name (kind)` (`work`, `mobile`,
  `home`), counted when the kind came before: `Jane Doe`, `Jane Doe (work 2)`,
  `Jane Doe (mobile)`. Business numbers come first, then mobile, then home.
- `offset` and `limit` count these lines, not contacts (unlike the other formats): every
  page has 32 lines (`limit` may ask for fewer, never more) but the last. Next is
  `offset + limit`, Previous `offset - limit`, so following Next from the first page lists
  every line once, and Previous retraces the same pages. A contact's numbers may straddle
  two pages; pages of whole contacts would make Previous guess where the page before began.
- The number is what the phone dials: spaces, dashes, dots, slashes and brackets are taken
  out; one with anything but digits, `*`, `#` and a leading `+` left (a SIP address, "ext.")
  or longer than 32 characters is left out (a cut number dials someone else); a number the
  contact lists twice, written differently, is listed once. A contact with no number
  left is not listed.
- Cisco documents no length for `Name` and `Telephone` (not confirmed,
  phone-formats.md §4); ours is 32 characters for both, and for `Title`. A name is one line
  (white space runs made one space), cut before its `(kind)` so that the kind stays.
- Soft keys: 1 Dial (`SoftKey:Dial`), 2 Search, 3 Exit (`SoftKey:Exit`), 4 Next (when lines
  follow), 5 Previous (past the first page). Each key keeps its position on every page (a
  key left out leaves its slot empty); the first four are the ones a user needs most, so
  Previous is the one a phone showing four keys at a time puts on its second row.
- Links are the request's own absolute URL (`Query.url`: scheme and `Host` as the phone
  sent them, as Cisco's examples all use full `http://` URLs) with `q`, `offset` and
  `limit`.
- UTF-8, declared in the XML header and the Content-Type. Phones check the declaration
  against their `Accept-Charset`: older models send `iso-8859-1, utf-8;q=0.8`, newer ones
  `utf-8`; every one lists UTF-8, so it is always UTF-8.

One line per number and its pages come from gateway.formats.lines, shared with the Snom
minibrowser format, whose directory has one `Telephone` per entry too.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from gateway.entry import Entry
from gateway.formats import XML_TYPE, BadQuery, Query
from gateway.formats.lines import dialable_number, line_page, link, prompt_of, title_of
from gateway.formats.xmlout import child, document

#: `DirectoryEntry`s per object: Cisco's limit, and so the lines of a page.
PAGE_SIZE = 32
#: Our caps (Cisco documents none for these; see the module's docstring).
MAX_NAME = 32
MAX_TITLE = 32


def _soft_key(root: etree._Element, name: str, url: str, position: int) -> None:
    key = child(root, "SoftKeyItem")
    child(key, "Name", name)
    child(key, "URL", url)
    child(key, "Position", str(position))


def directory(entries: Sequence[Entry], query: Query) -> etree._Element:
    page = line_page(entries, query, PAGE_SIZE, dialable_number, MAX_NAME)
    root = etree.Element("CiscoIPPhoneDirectory")
    child(root, "Title", title_of(query, MAX_TITLE))
    child(root, "Prompt", prompt_of(page, query))
    for line in page.lines:
        item = child(root, "DirectoryEntry")
        child(item, "Name", line.name)
        child(item, "Telephone", line.number)
    _soft_key(root, "Dial", "SoftKey:Dial", 1)
    _soft_key(root, "Search", link(query, form="search"), 2)
    _soft_key(root, "Exit", "SoftKey:Exit", 3)
    if page.more:
        _soft_key(root, "Next", link(query, offset=page.offset + page.limit, limit=page.limit), 4)
    if page.previous is not None:
        _soft_key(root, "Previous", link(query, offset=page.previous, limit=page.limit), 5)
    return root


def search_input(query: Query) -> etree._Element:
    """The input object: the phone GETs `URL?q=<typed>`."""
    root = etree.Element("CiscoIPPhoneInput")
    child(root, "Title", "Search")
    child(root, "Prompt", "Name or number")
    child(root, "URL", query.url)
    item = child(root, "InputItem")
    child(item, "DisplayName", "Name or number")
    child(item, "QueryStringParam", "q")
    child(item, "DefaultValue", query.q)
    child(item, "InputFlags", "A")
    return root


def menu(query: Query) -> etree._Element:
    root = etree.Element("CiscoIPPhoneMenu")
    child(root, "Title", "Directory")
    child(root, "Prompt", "Select")
    for name, url in (("Search", link(query, form="search")), ("All contacts", query.url)):
        item = child(root, "MenuItem")
        child(item, "Name", name)
        child(item, "URL", url)
    return root


class CiscoDirectory:
    name = "cisco"
    content_type = XML_TYPE
    searchable = True
    #: The object asked for besides the directory: `search` or `menu`.
    parameters = ("form",)
    #: Paging and search links hold the URL the page was fetched from.
    uses_url = True

    def render(self, entries: Sequence[Entry], query: Query) -> bytes:
        form = query.params.get("form", "")
        if form == "search":
            return document(search_input(query))
        if form == "menu":
            return document(menu(query))
        if form:
            raise BadQuery("form is search or menu")
        return document(directory(entries, query))


FORMAT = CiscoDirectory()
