"""Gigaset's phonebook search protocol, read as the handset reads it: it appends
`command=get_list&type=pb&fn=…&ln=…&hm=…&first=…&count=…` to the URL and reads
`<list response="get_list" type total first last>` with `<entry id>`s of `ln`, `fn`, `hm`,
`mb`, `em`, paging on with `first=last+1` until `last` is `total`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree

from gateway.app import create_app
from gateway.entry import Entry
from gateway.formats import Query, load_format
from gateway.formats.gigaset import MAX_COUNT, glob, word_starts
from tests.conftest import ConfigFactory
from tests.format_contract import USER, FormatContract, card

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
URL = f"/phonebook/gigaset/users/{USER}/tbook"
#: The fields of an entry, in the order they come.
TAGS = ("ln", "fn", "hm", "mb", "em")
#: What the handset sends for a caller's number (captured from an N510, tel.search.ch's
#: server logs): every other field a star.
REVERSE_SEARCH = (
    "command=get%5flist&type=pb&fn=%2a&ln=%2a&ct=%2a&st=%2a&hm={number}&nr=%2a&mb=%2a"
    "&fx=%2a&sip=%2a&zc=%2a&em=%2a&in=%2a&bp=%2a&lang=9&first=1&count=1&mac=7C2F80D0C183"
    "&reqsrc=auto&handsetid=23546"
)
PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def answer(body: bytes) -> etree._Element:
    """The answer, checked against what the handset relies on."""
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    root = etree.fromstring(body, PARSER)
    if root.tag == "error":
        assert root.get("response") and root.get("type") is not None
        assert [c.tag for c in root] == ["errorid"] and (root.findtext("errorid") or "").isdigit()
        return root
    assert root.tag == "list" and root.get("response") == "get_list"
    assert root.get("type") in ("pb", "pr")
    total = int(root.get("total") or "-1")
    entries = root.findall("entry")
    assert len(entries) == len(root)
    if total == 0:
        assert root.get("notfound") and not entries and root.get("first") is None
    elif entries:
        first, last = int(root.get("first") or 0), int(root.get("last") or 0)
        assert 1 <= first <= last <= total and last - first + 1 == len(entries)
        assert [e.get("id") for e in entries] == [str(i) for i in range(first, last + 1)]
    for entry in entries:
        tags = [c.tag for c in entry]
        assert tags == [t for t in TAGS if t in tags]  # each once, in order
        assert entry.findtext("hm") or entry.findtext("mb")
        assert all(c.text for c in entry) and (entry.findtext("ln") or entry.findtext("fn"))
    return root


def person(entry: etree._Element) -> str:
    return f"{entry.findtext('fn') or ''} {entry.findtext('ln') or ''}".strip()


def people(root: etree._Element) -> list[str]:
    return [person(entry) for entry in root.findall("entry")]


async def ask(client: Client, query: str = "", url: str = URL) -> etree._Element:
    response = await client.get(url + "?" + query)
    assert response.status == 200, await response.text()
    assert response.content_type == "text/xml"
    return answer(await response.read())


def get_list(**params: str | int) -> str:
    return urlencode({"command": "get_list", "type": "pb", **params})


async def page_through(client: Client, count: int, url: str = URL, **search: str) -> list[str]:
    """Every person the search finds, read page by page as the handset does."""
    found: list[str] = []
    first = 1
    while True:
        root = await ask(client, get_list(**search, first=first, count=count), url)
        total = int(root.get("total") or 0)
        if total == 0:
            return found
        assert root.get("first") == str(first)
        assert len(root) == min(count, MAX_COUNT, total - first + 1)
        found += people(root)
        if root.get("last") == str(total):
            assert len(found) == total
            return found
        first = int(root.get("last") or 0) + 1


class TestGigaset(FormatContract):
    format = "gigaset"

    def read(self, body: bytes) -> list[tuple[str, list[str]]]:
        return [
            (person(e), [n for n in (e.findtext("hm"), e.findtext("mb")) if n])
            for e in answer(body).findall("entry")
        ]

    async def test_a_browser_gets_the_whole_list_in_one_answer(self, client: Client) -> None:
        root = await ask(client)
        total = int(root.get("total") or 0)
        assert total == len(root) >= 20
        assert (root.get("first"), root.get("last")) == ("1", str(total))
        assert "Anna Müller" in people(root) and "Nobody Without Number" not in people(root)
        # Without the protocol's parameters, every format's `q`, `offset` and `limit`.
        found = await ask(client, "q=m%C3%BCller&offset=1&limit=5")
        assert (found.get("total"), found.get("first"), len(found)) == ("2", "2", 1)

    @pytest.mark.parametrize("count", [1, 7, MAX_COUNT])
    async def test_paging_with_first_and_count_lists_everyone_once(
        self, client: Client, count: int
    ) -> None:
        everyone = people(await ask(client))
        assert await page_through(client, count) == everyone
        assert await page_through(client, count, fn="*", ln="*", hm="*") == everyone
        assert len(set(everyone)) == len(everyone)

    async def test_one_entry_per_person_with_its_fixed_and_mobile_number(
        self, client: Client
    ) -> None:
        root = await ask(client, get_list(ln="Müller", fn="Anna"))
        (anna,) = root.findall("entry")
        assert {c.tag: c.text for c in anna} == {
            "ln": "Müller",
            "fn": "Anna",
            "hm": "+49 30 2094 1100",  # the first business number
            "mb": "+49 171 3344556",
            "em": "anna.mueller@brandt-soehne.de",
        }
        (bjorn,) = (await ask(client, get_list(ln="lindqvist"))).findall("entry")
        assert bjorn.findtext("hm") == "+46 8 123 456 70"  # business before home
        assert bjorn.findtext("mb") == "+46 70 555 12 34"
        (giulia,) = (await ask(client, get_list(fn="Giulia"))).findall("entry")
        assert giulia.findtext("hm") == "+39 06 5550 1234"  # home, without a business one

    async def test_names_with_wildcards_case_and_accents_ignored(self, client: Client) -> None:
        muellers = {"Anna Müller", "Jürgen Müller-Straße"}
        for ln in ("Mü*", "mu", "MÜLLER*", "Mü**", "*ülle*"):
            assert set(people(await ask(client, get_list(ln=ln)))) == muellers, ln
        assert people(await ask(client, get_list(ln="Straße*"))) == ["Jürgen Müller-Straße"]
        assert people(await ask(client, get_list(fn="ines"))) == ["Inés García"]
        assert people(await ask(client, get_list(fn="*a", ln="Sil*"))) == ["Maria Silva"]
        assert people(await ask(client, get_list(ln="Brandt*"))) == ["Anna Müller"]  # company
        assert people(await ask(client, get_list(ln="Ива*"))) == ["Дмитрий Иванов"]
        assert people(await ask(client, get_list(ln="田中"))) == ["博 田中"]
        assert people(await ask(client, get_list(em="anna.m*"))) == ["Anna Müller"]
        # The beginning of a word unless a star says otherwise.
        assert "Anna Müller" not in people(await ask(client, get_list(ln="ller*")))
        assert people(await ask(client, get_list(set_first="mül*"))) == [
            p for p in people(await ask(client)) if p in muellers
        ]

    async def test_names_with_ampersand_and_angle_brackets(self, client: Client) -> None:
        (smith,) = (await ask(client, get_list(ln="smith & <sons>*"))).findall("entry")
        assert (smith.findtext("ln") or "").startswith("Smith & <Sons> \"Ltd\" 'x'")
        body = await (await client.get(URL + "?" + get_list(ln="smith*"))).read()
        assert b"Smith &amp; &lt;Sons&gt;" in body

    async def test_numbers_with_wildcards(self, client: Client) -> None:
        assert people(await ask(client, get_list(hm="*3344556*"))) == ["Anna Müller"]  # mobile
        assert people(await ask(client, get_list(mb="*334 4556*"))) == ["Anna Müller"]
        assert people(await ask(client, get_list(hm="+49 30 2094 11*"))) == ["Anna Müller"]
        assert people(await ask(client, get_list(hm="*2094 1101"))) == ["Anna Müller"]
        assert people(await ask(client, get_list(hm="+49 30 2094 1101"))) == ["Anna Müller"]
        assert "Anna Müller" not in people(await ask(client, get_list(hm="*2094 110")))
        # Without stars the whole number: a caller ID without its trunk prefix is one (the
        # gateway's caller-ID lookup), a shorter suffix is none.
        assert people(await ask(client, get_list(hm="30 2094 1101"))) == ["Anna Müller"]
        assert "Anna Müller" not in people(await ask(client, get_list(hm="2094 1101")))
        none = await ask(client, get_list(mb="*2094 1100*"))  # a business number
        assert (none.get("total"), none.get("notfound")) == ("0", "mb")

    async def test_the_handsets_reverse_search(self, client: Client) -> None:
        root = await ask(client, REVERSE_SEARCH.format(number="%2B49302094%201100"))
        assert people(root) == ["Anna Müller"] and root.get("total") == "1"
        root = await ask(client, REVERSE_SEARCH.format(number="%2B491713344556"))
        assert people(root) == ["Anna Müller"]
        assert (await ask(client, REVERSE_SEARCH.format(number="999"))).get("notfound") == "hm"

    async def test_the_handsets_reverse_search_with_its_limit(self, client: Client) -> None:
        query = REVERSE_SEARCH.format(number="%2B491713344556") + "&limit=2048"
        assert people(await ask(client, query)) == ["Anna Müller"]

    async def test_nothing_found_is_a_total_of_0(self, client: Client) -> None:
        body = await (await client.get(URL + "?" + get_list(ln="Zzyzx*"))).read()
        assert body == (
            b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<list response="get_list" type="pb" notfound="ln" total="0"/>\n'
        )
        city = await ask(client, get_list(ct="Berlin", ln="*"))  # we know no addresses
        assert (city.get("total"), city.get("notfound")) == ("0", "ct")

    async def test_the_type_is_echoed(self, client: Client) -> None:
        root = await ask(client, urlencode({"command": "get_list", "type": "pr", "ln": "Mü*"}))
        assert root.get("type") == "pr" and len(root) == 2

    @pytest.mark.parametrize(
        ("query", "errorid"),
        [
            ("command=set_entry&type=pb", "1"),
            ("command=&type=yp", "7"),
            ("command=get_list&type=%3Cx%3E", "7"),
            ("command=get_list&first=abc", "2"),
            ("command=get_list&first=-1", "2"),
            ("command=get_list&count=1.5", "2"),
            ("command=get_list&count=%EF%BC%91", "2"),  # a full-width digit
        ],
    )
    async def test_refusals_are_the_protocols_error_answer(
        self, client: Client, query: str, errorid: str
    ) -> None:
        root = await ask(client, query)
        assert root.tag == "error" and root.findtext("errorid") == errorid

    @pytest.mark.parametrize(
        "query",
        [
            "ln=" + "*" * 100,
            "hm=" + "*" * 100,
            "set_first=" + "*" * 100,
            "fn=" + "*a" * 50,
            "hm=" + "*1" * 50,
            "hm=" + "+" * 100,
            "ln=" + "x" * 5000,
            "fn=%00",
            "em=a%0Ab",
            "first=" + "9" * 100,
            "count=" + "9" * 100,
            "first=0&count=0",
            "command=get_list&command=del",
            "type=",
            "q=m%C3%BC&offset=1&limit=1",
            # Fold to nothing, or to stars: a full-width and a small star, a lone accent.
            "command=get_list&ln=%EF%BC%8A",
            "command=get_list&fn=%EF%B9%A1",
            "command=get_list&em=%CC%81",
            "command=get_list&ln=*%CC%81*",
        ],
    )
    async def test_hostile_protocol_parameters_never_5xx(self, client: Client, query: str) -> None:
        response = await client.get(self.url() + "?command=get_list&" + query)
        assert response.status in (200, 400), query
        if response.status == 200:
            answer(await response.read())


def render(*entries: Entry, **params: str) -> bytes:
    return load_format("gigaset").render(entries, Query(params=params))


def test_the_exact_bytes_of_an_entry() -> None:
    entry = Entry(
        "x",
        "Jane Doe",
        {"given_name": "Jane", "surname": "Doe", "business_number": ("+49 30 1234",)},
    )
    assert render(entry, command="get_list", type="pb", first="1", count="10") == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<list response="get_list" type="pb" total="1" first="1" last="1">\n'
        b'  <entry id="1">\n'
        b"    <ln>Doe</ln>\n"
        b"    <fn>Jane</fn>\n"
        b"    <hm>+49 30 1234</hm>\n"
        b"  </entry>\n"
        b"</list>\n"
    )


def test_which_numbers_go_where() -> None:
    every = Entry(
        "1",
        "All Kinds",
        {
            "business_number": ("+49 30 1111", "+49 30 2222"),
            "home_number": ("+49 89 4444",),
            "mobile_number": ("+49 171 3333", "+49 171 5555"),
            "sip_address": ("sip:all@example.com",),
        },
    )
    home = Entry("2", "Home Only", {"home_number": ("+49 89 1",)})
    mobile = Entry("3", "Mobile Only", {"mobile_number": ("+49 171 1",)})
    nameless = Entry("4", "", {"business_number": ("0815",)})
    sip = Entry("5", "SIP Only", {"sip_address": ("sip:1234@pbx",)})
    root = answer(render(every, home, mobile, nameless, sip, command="get_list"))
    assert [{c.tag: c.text for c in e} for e in root] == [
        {"ln": "All Kinds", "hm": "+49 30 1111", "mb": "+49 171 3333"},
        {"ln": "Home Only", "hm": "+49 89 1"},
        {"ln": "Mobile Only", "mb": "+49 171 1"},
        {"ln": "0815", "hm": "0815"},
    ]  # nothing to dial from the handset for a SIP address alone
    assert people(answer(render(every, command="get_list", hm="*4444"))) == ["All Kinds"]
    assert people(answer(render(every, command="get_list", mb="*5555"))) == ["All Kinds"]
    assert people(answer(render(every, command="get_list", sip="all@*"))) == ["All Kinds"]
    assert answer(render(every, command="get_list", fx="*")).get("total") == "1"
    assert answer(render(every, command="get_list", fx="1*")).get("notfound") == "fx"


def test_a_page_past_the_end_is_the_total_alone() -> None:
    entry = Entry("1", "A", {"business_number": ("1",)})
    root = answer(render(entry, entry, command="get_list", first="3", count="5"))
    assert (root.get("total"), root.get("first"), len(root)) == ("2", None, 0)


@pytest.mark.parametrize(
    ("text", "pattern", "expected"),
    [
        ("muller-strasse", "mu*", True),
        ("muller-strasse", "str", True),  # a later word
        ("muller-strasse", "ller", False),  # not a word's beginning
        ("muller-strasse", "*ller", True),
        ("muller-strasse", "m*r*s*e", True),
        ("muller-strasse", "m*x", False),
        ("muller-strasse", "strasse*muller", False),  # in order
        ("aaa", "a*a*a", True),
        ("aa", "a*a*a", False),  # parts do not overlap
    ],
)
def test_name_patterns(text: str, pattern: str, expected: bool) -> None:
    parts = [p for p in pattern.split("*") if p]
    assert glob(text, parts, pattern.startswith("*"), True, word_starts(text)) is expected


@pytest.mark.parametrize(
    ("digits", "pattern", "expected"),
    [
        ("493012345", "4930*", True),
        ("493012345", "*345", True),
        ("493012345", "*34", False),  # the end is anchored
        ("493012345", "30*", False),  # so is the beginning
        ("493012345", "*30*", True),
        ("493012345", "493012345", True),
        ("493012345", "49301234", False),
        ("12", "1*2*", True),
        ("1", "1*1", False),
    ],
)
def test_number_patterns(digits: str, pattern: str, expected: bool) -> None:
    parts = [p for p in pattern.split("*") if p]
    assert glob(digits, parts, pattern.startswith("*"), pattern.endswith("*")) is expected


def test_star_floods_cannot_backtrack() -> None:
    """What a regular expression like `.*a.*a…b` would take exponential time for."""
    text = "a" * 200_000
    started = time.perf_counter()
    for open_end in (True, False):
        assert not glob(text, ["a"] * 50 + ["b"], True, open_end)
        assert not glob(text, ["a"] * 50 + ["b"], False, open_end, word_starts(text))
    assert glob(text, ["a"] * 50, True, False)
    entries = [
        Entry(str(i), f"Person {i}", {"surname": "a" * 60, "mobile_number": ("1" * 20,)})
        for i in range(2000)
    ]
    for field, value in (("ln", "*a" * 49 + "*b"), ("hm", "*1" * 49 + "*2"), ("fn", "*" * 100)):
        load_format("gigaset").render(entries, Query(params={field: value}))
    assert time.perf_counter() - started < 5  # in practice well under a second


async def serve(
    aiohttp_client: ClientFactory,
    make_config: ConfigFactory,
    contacts_dir: Path,
    document: str = "",
    **cards: str,
) -> Client:
    for name, text in cards.items():
        (contacts_dir / f"{name}.vcf").write_text(text, encoding="utf-8")
    config = make_config(document='formats = ["gigaset"]\n' + document)
    return await aiohttp_client(create_app(config))


async def test_searches_look_past_the_cap_and_count_is_capped(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    bulk = {
        f"bulk{i}": card(
            f"bulk{i}", f"Person{i:03d} Bulk", ("WORK", f"+49 40 1{i:05d}"),
            extra=f"N:Bulk;Person{i:03d};;;\r\n",
        )
        for i in range(150)
    }  # fmt: skip
    client = await serve(aiohttp_client, make_config, contacts_dir, "max_entries = 120", **bulk)
    listed = people(await ask(client))
    assert len(listed) == 120
    assert await page_through(client, 1000) == listed  # pages of MAX_COUNT
    page = await ask(client, get_list(count=1000))
    assert (page.get("total"), page.get("last"), len(page)) == ("120", str(MAX_COUNT), MAX_COUNT)
    # The search finds every Bulk, the 36 or more the cap left out as well.
    found = await page_through(client, 40, ln="Bulk*")
    assert sorted(found) == sorted(f"Person{i:03d} Bulk" for i in range(150))
    left_out = next(f"Person{i:03d}" for i in range(150) if f"Person{i:03d} Bulk" not in listed)
    assert people(await ask(client, get_list(fn=left_out))) == [f"{left_out} Bulk"]
    number = "%2B4940" + "1" + left_out[-3:].rjust(5, "0")
    assert people(await ask(client, REVERSE_SEARCH.format(number=number))) == [f"{left_out} Bulk"]


async def test_national_and_international_spellings_with_a_default_region(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await serve(aiohttp_client, make_config, contacts_dir, 'default_region = "DE"')
    for hm in ("030 2094 1100", "030209411*", "+4930209411*", "004930209411*", "*20941100"):
        assert people(await ask(client, get_list(hm=hm))) == ["Anna Müller"], hm
    assert people(await ask(client, get_list(mb="0171 33*"))) == ["Anna Müller"]
    root = await ask(client, REVERSE_SEARCH.format(number="030%202094%201100"))
    assert people(root) == ["Anna Müller"]


async def test_the_international_prefix_alone_matches_nobody(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    config = make_config(document='formats = ["gigaset"]\ndefault_region = "DE"')
    client = await aiohttp_client(create_app(config))
    for number in ("00", "+00", "0"):
        root = await ask(client, get_list(hm=number))
        assert root.get("total") == "0", number
