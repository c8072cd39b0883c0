"""Snom's minibrowser directory, read as the phone reads it: pages of `DirectoryEntry`s
walked through the F4 (Next) and F2 (Previous) soft keys, search through the
`SnomIPPhoneInput` the F1 key opens, with the token of its `Url` replaced by what the user
typed. The data set is the Cisco tests' one."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree

from gateway.app import create_app
from gateway.formats import BadQuery, Query, load_format
from gateway.formats.snom_browser import PAGE_SIZE
from tests.conftest import ConfigFactory
from tests.format_contract import USER
from tests.test_format_cisco import (
    CAP,
    PEOPLE,
    LinePages,
    Page,
    dialled,
    fetch,
    listed_people,
    local,
    names_of,
    numbers_of,
    person_name,
    sip_address,
    write_people,
)
from tests.test_format_cisco import walk as cisco_walk

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>'
PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
URL_ = f"/phonebook/snom-browser/users/{USER}/tbook"
LABELS = {"F1": "Search", "F2": "Previous", "F4": "Next"}


def snom_dialled(i: int) -> list[str]:
    """What the phone dials for person `i`: Cisco's numbers, then the SIP address."""
    sip = sip_address(i)
    return dialled(i) + ([sip] if sip else [])


def read_page(body: bytes) -> Page:
    """A directory page, checked against what the phone takes."""
    root = etree.fromstring(body, PARSER)
    assert root.tag == "SnomIPPhoneDirectory"
    assert dict(root.attrib) == {"speedselect": "select"}
    tags = [element.tag for element in root]
    assert tags[:2] == ["Title", "Prompt"]
    assert set(tags[2:]) <= {"DirectoryEntry", "SoftKeyItem"}
    entries = root.findall("DirectoryEntry")
    assert len(entries) <= PAGE_SIZE < 100  # speed-select handles at most 100 lines
    lines = []
    for entry in entries:
        assert [field.tag for field in entry] == ["Name", "Telephone"]
        name, number = entry.findtext("Name") or "", entry.findtext("Telephone") or ""
        assert name and "\n" not in name
        assert number and not any(c.isspace() for c in number), number
        lines.append((name, number))
    keys: dict[str, str] = {}
    for key in root.findall("SoftKeyItem"):
        assert [field.tag for field in key] == ["Name", "Label", "URL"]
        name, label = key.findtext("Name") or "", key.findtext("Label") or ""
        assert LABELS.get(name) == label and label not in keys
        keys[label] = key.findtext("URL") or ""
    assert "Search" in keys
    return Page(lines, root.findtext("Title") or "", root.findtext("Prompt") or "", keys)


async def walk(client: Client, first: str) -> list[Page]:
    return await cisco_walk(client, first, read_page)


async def search_form(client: Client, page: Page) -> tuple[etree._Element, str, str]:
    """The input object the Search key opens: (it, its Url, its token)."""
    form = etree.fromstring(await fetch(client, page.keys["Search"]), PARSER)
    assert form.tag == "SnomIPPhoneInput"
    assert [element.tag for element in form] == ["Title", "Prompt", "Url", "InputItem"]
    item = form.find("InputItem")
    assert item is not None
    assert [field.tag for field in item] == [
        "DisplayName", "InputToken", "DefaultValue", "InputFlags"
    ]  # fmt: skip
    assert item.findtext("InputFlags") == "a"
    url, token = form.findtext("Url") or "", item.findtext("InputToken") or ""
    assert token and token in url
    return form, url, token


class TestSnomBrowser(LinePages):
    format = "snom-browser"
    page_size = PAGE_SIZE

    def read_page(self, body: bytes) -> Page:
        return read_page(body)

    async def test_the_first_page_and_its_soft_keys(self, client: Client) -> None:
        page = read_page(await fetch(client, self.url()))
        assert len(page.lines) == PAGE_SIZE
        assert (page.title, page.prompt) == ("Directory", "Lines 1-50")
        assert set(page.keys) == {"Search", "Next"}
        assert page.next is not None and local(page.next) == self.url() + "?offset=50&limit=50"


@pytest.fixture
async def people(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> Client:
    write_people(contacts_dir)
    config = make_config(document=f'formats = ["snom-browser"]\nmax_entries = {CAP}')
    return await aiohttp_client(create_app(config))


async def test_following_next_lists_every_number_of_the_listed_contacts_once(
    people: Client,
) -> None:
    pages = await walk(people, URL_)
    expected = Counter(n for i in await listed_people(people) for n in snom_dialled(i))
    assert numbers_of(pages) == expected  # each once; nobody past the cap
    total = sum(expected.values())
    assert [len(page.lines) for page in pages] == [50] * (total // 50) + [total % 50]


async def test_one_line_per_number_named_by_its_kind(people: Client) -> None:
    pages = await walk(people, URL_)
    assert names_of(pages, 5) == [
        ("Person 005", "+4930100005"),  # written twice, listed once
        ("Person 005 (work 2)", "+4930900005"),
        ("Person 005 (mobile)", "+49171200005"),
        ("Person 005 (SIP)", "sip:person5@example.com"),
    ]
    # Names are not cut; & < " ' and other scripts come through.
    assert [name for name, _ in names_of(pages, 7)] == [
        person_name(7),
        person_name(7) + " (mobile)",
    ]
    assert names_of(pages, 17)[1] == (person_name(17) + " (mobile)", "+49171200017")
    assert names_of(pages, 21)[0] == ("Person 021 田中 博", "+4930100021")
    assert [number for _, number in names_of(pages, 11)] == ["+4930100011", "+49171200011"]


async def test_search_through_the_input_object_covers_everyone(people: Client) -> None:
    first = read_page(await fetch(people, URL_))
    form, url, token = await search_form(people, first)
    assert form.findtext("InputItem/DefaultValue") == ""

    def typed(text: str) -> str:
        return url.replace(token, quote(text))

    found = await walk(people, typed("jürgen"))
    assert found[0].title == "Search: jürgen"
    # Person 72 is past the cap: search sees the whole book.
    assert numbers_of(found) == Counter(snom_dialled(13) + snom_dialled(72))
    by_number = await walk(people, typed("171 200072"))
    assert numbers_of(by_number) == Counter(snom_dialled(72))
    everyone = await walk(people, typed("person"))
    assert numbers_of(everyone) == Counter(n for i in range(1, PEOPLE + 1) for n in snom_dialled(i))
    assert all(parse_qs(urlsplit(p.next).query)["q"] == ["person"] for p in everyone if p.next)
    # Search from a result page starts from its term.
    again, _, _ = await search_form(people, everyone[-1])
    assert again.findtext("InputItem/DefaultValue") == "person"
    nobody = read_page(await fetch(people, typed("zzzqqq")))
    assert (nobody.lines, nobody.prompt, nobody.next) == ([], "No match", None)


async def test_a_smaller_limit_pages_the_same_lines(people: Client) -> None:
    pages = await walk(people, URL_ + "?limit=9")
    assert {len(page.lines) for page in pages[:-1]} == {9}
    assert numbers_of(pages) == numbers_of(await walk(people, URL_))
    assert len(read_page(await fetch(people, URL_ + "?limit=1000")).lines) == PAGE_SIZE


async def test_a_page_past_the_end_is_empty_and_leads_back(people: Client) -> None:
    past = read_page(await fetch(people, URL_ + "?offset=100000&q=person"))
    assert (past.lines, past.prompt, past.next) == ([], "No match", None)
    assert past.previous is not None
    last = read_page(await fetch(people, past.previous))
    assert len(last.lines) == PAGE_SIZE and last.next is None


@pytest.mark.parametrize("query", ["form=menu", "form=evil", "form=" + "x" * 500, "form=%01"])
async def test_an_unknown_form_is_400(people: Client, query: str) -> None:
    assert (await people.get(f"{URL_}?{query}")).status == 400


async def test_hostile_terms_come_back_escaped(people: Client) -> None:
    term = "<Sons> & \"'"
    page = read_page(await fetch(people, f"{URL_}?{urlencode({'q': term})}"))
    assert page.title == "Search: <Sons> & \"'"
    form = etree.fromstring(
        await fetch(people, f"{URL_}?{urlencode({'q': term, 'form': 'search'})}"), PARSER
    )
    assert form.findtext("InputItem/DefaultValue") == term


def test_the_token_is_one_the_path_does_not_hold() -> None:
    render = load_format("snom-browser").render
    for path, token in (
        ("/p/users/sip:a@b/tbook", "__Q__"),
        ("/p/users/sip:__q__@b/tbook", "__Q1__"),
        ("/p/users/sip:__Q__x__Q1__@b/tbook", "__Q2__"),
    ):
        form = etree.fromstring(render([], Query(url=path, params={"form": "search"})))
        assert form.findtext("InputItem/InputToken") == token
        assert form.findtext("Url") == f"{path}?q={token}"
        assert re.findall(r"__Q\d*__", form.findtext("Url") or "", re.I)[-1] == token
    with pytest.raises(BadQuery):
        render([], Query(params={"form": "menu"}))
