"""Cisco's directory objects, read as the phone reads them: pages of at most 32
`DirectoryEntry`s walked through their Next and Previous soft keys, search through the
`CiscoIPPhoneInput` the Search key opens (the phone GETs its URL with `?q=`), the menu for
"URL Directories"."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree
from yarl import URL

from gateway import keys
from gateway.app import create_app
from gateway.formats.cisco import MAX_NAME, PAGE_SIZE
from gateway.model import UserRef
from tests.conftest import ConfigFactory
from tests.format_contract import USER, FormatContract, card

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>'
PARSER = etree.XMLParser(resolve_entities=False, no_network=True)

# The data set: PEOPLE contacts named `Person NNN …` (sorted by their number whatever the
# collation), CAP of them listed; the rest only found by search.
PEOPLE = 75
CAP = 60
SPECIAL_NAMES = {
    7: "A & <B> \"c\" 'd'",
    13: "Jürgen Müller-Straße",
    17: "Maximilian-Alexander von und zu Hohenzollern-Sigmaringen",
    21: "田中 博",
    72: "Jürgen Beyond-the-Cap",
}


def person_name(i: int) -> str:
    return f"Person {i:03d} {SPECIAL_NAMES.get(i, '')}".strip()


def person_numbers(i: int) -> list[tuple[str, str]]:
    """(vCard TEL type, number as written): work and mobile for everyone, home for every
    third; person 5 has one work number twice (written differently) and a second one;
    person 11 a number no phone can dial."""
    numbers = [("WORK", f"+49 30 1{i:05d}"), ("CELL", f"+49 171 2{i:05d}")]
    if i % 3 == 0:
        numbers.append(("HOME", f"+49 89 3{i:05d}"))
    if i == 5:
        numbers[1:1] = [("WORK", f"+49-30-1{i:05d}"), ("WORK", f"(+49) 30 9{i:05d}")]
    if i == 11:
        numbers.append(("WORK", "+49 30 555 ext. 12"))
    return numbers


def sip_address(i: int) -> str | None:
    return f"sip:person{i}@example.com" if i % 4 == 1 else None


def dialled(i: int) -> list[str]:
    """What a phone dials for person `i`, each number once, work, mobile, home."""
    order = {"WORK": 0, "CELL": 1, "HOME": 2}
    found: list[str] = []
    for _, number in sorted(person_numbers(i), key=lambda pair: order[pair[0]]):
        cleaned = re.sub(r"[\s\-./()]", "", number)
        if re.fullmatch(r"\+?[0-9*#]+", cleaned) and cleaned not in found:
            found.append(cleaned)
    return found


def write_people(contacts_dir: Path) -> None:
    """The data set alone (the demo cards removed)."""
    for old in contacts_dir.glob("*.vcf"):
        old.unlink()
    for i in range(1, PEOPLE + 1):
        sip = sip_address(i)
        extra = f"IMPP;X-SERVICE-TYPE=SIP:{sip}\r\n" if sip else ""
        text = card(f"p{i}", person_name(i), *person_numbers(i), extra=extra)
        (contacts_dir / f"p{i:03d}.vcf").write_text(text, encoding="utf-8")


async def listed_people(client: Client) -> list[int]:
    """The people the gateway lists (which of them the cap keeps is the composition's
    business, not the format's)."""
    rendered = await client.app[keys.ENGINE].document("tbook", UserRef.parse(USER))
    listed = [int(entry.display_name.split()[1]) for entry in rendered.directory]
    assert len(listed) == CAP
    return listed


def local(link: str) -> str:
    """A link as the test client takes it (path and query; scheme and host dropped)."""
    url = URL(link)
    return url.path_qs if url.absolute else link


async def fetch(client: Client, link: str) -> bytes:
    response = await client.get(local(link))
    assert response.status == 200, (link, await response.text())
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    body = await response.read()
    assert body.startswith(DECLARATION)
    return body


@dataclass
class Page:
    lines: list[tuple[str, str]]
    title: str
    prompt: str
    keys: dict[str, str]  # soft key name (Snom: its label) -> URL

    @property
    def next(self) -> str | None:
        return self.keys.get("Next")

    @property
    def previous(self) -> str | None:
        return self.keys.get("Previous")


def read_page(body: bytes) -> Page:
    """A directory page, checked against what the phone takes."""
    root = etree.fromstring(body, PARSER)
    assert root.tag == "CiscoIPPhoneDirectory" and not root.attrib
    tags = [element.tag for element in root]
    assert tags[:2] == ["Title", "Prompt"]
    assert set(tags[2:]) <= {"DirectoryEntry", "SoftKeyItem"}
    entries = root.findall("DirectoryEntry")
    assert len(entries) <= PAGE_SIZE
    lines = []
    for entry in entries:
        assert [field.tag for field in entry] == ["Name", "Telephone"]
        name, number = entry.findtext("Name") or "", entry.findtext("Telephone") or ""
        assert 0 < len(name) <= MAX_NAME and "\n" not in name
        assert re.fullmatch(r"\+?[0-9*#]{1,32}", number), number
        lines.append((name, number))
    keys: dict[str, str] = {}
    positions: dict[int, str] = {}
    for key in root.findall("SoftKeyItem"):
        assert [field.tag for field in key] == ["Name", "URL", "Position"]
        name = key.findtext("Name") or ""
        position = int(key.findtext("Position") or "0")
        assert 1 <= position <= 5 and position not in positions and name not in keys
        positions[position] = name
        keys[name] = key.findtext("URL") or ""
    assert positions[1] == "Dial" and keys["Dial"] == "SoftKey:Dial"
    assert positions[2] == "Search"
    assert positions[3] == "Exit" and keys["Exit"] == "SoftKey:Exit"
    assert positions.get(4, "Next") == "Next" and positions.get(5, "Previous") == "Previous"
    title, prompt = root.findtext("Title") or "", root.findtext("Prompt") or ""
    assert len(title) <= 32
    return Page(lines, title, prompt, keys)


async def walk(
    client: Client, first: str, read: Callable[[bytes], Page] | None = None
) -> list[Page]:
    """Every page from `first` on, through the Next keys (read by `read`, Cisco's by
    default); each Previous key is checked to lead back to the page before."""
    read = read or read_page
    pages = [read(await fetch(client, first))]
    assert pages[0].previous is None
    while (following := pages[-1].next) is not None:
        assert len(pages) < 100, "Next never ends"
        assert len(pages[-1].lines) == len(pages[0].lines)  # only the last page is short
        pages.append(read(await fetch(client, following)))
        back = pages[-1].previous
        assert back is not None
        assert read(await fetch(client, back)).lines == pages[-2].lines
    return pages


def numbers_of(pages: list[Page]) -> Counter[str]:
    return Counter(number for page in pages for _, number in page.lines)


def names_of(pages: list[Page], i: int) -> list[tuple[str, str]]:
    prefix = f"Person {i:03d}"
    return [line for page in pages for line in page.lines if line[0].startswith(prefix)]


class LinePages(FormatContract):
    """The contract for a format of one line per number in pages (Cisco's, the Snom
    minibrowser's): the phone's entries are the lines of every page, through Next."""

    page_size = 0

    def read_page(self, body: bytes) -> Page:
        raise NotImplementedError

    def read(self, body: bytes) -> list[tuple[str, list[str]]]:
        return [(name, [number]) for name, number in self.read_page(body).lines]

    async def read_all(self, client: Client, url: str) -> list[tuple[str, list[str]]]:
        pages = await walk(client, url, self.read_page)
        assert all(len(page.lines) == self.page_size for page in pages[:-1])
        return [(name, [number]) for page in pages for name, number in page.lines]


class TestCisco(LinePages):
    format = "cisco"
    page_size = PAGE_SIZE

    def read_page(self, body: bytes) -> Page:
        return read_page(body)

    async def test_the_first_page_and_its_soft_keys(self, client: Client) -> None:
        page = read_page(await fetch(client, self.url()))
        assert len(page.lines) == PAGE_SIZE
        assert (page.title, page.prompt) == ("Directory", "Lines 1-32")
        assert page.previous is None
        assert page.next is not None and local(page.next) == self.url() + "?offset=32&limit=32"
        assert local(page.keys["Search"]) == self.url() + "?form=search"


@pytest.fixture
async def people(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> Client:
    write_people(contacts_dir)
    config = make_config(document=f'formats = ["cisco"]\nmax_entries = {CAP}')
    return await aiohttp_client(create_app(config))


URL_ = f"/phonebook/cisco/users/{USER}/tbook"


async def test_following_next_lists_every_number_of_the_listed_contacts_once(
    people: Client,
) -> None:
    pages = await walk(people, URL_)
    expected = Counter(number for i in await listed_people(people) for number in dialled(i))
    assert numbers_of(pages) == expected  # each once; nobody past the cap
    assert [len(page.lines) for page in pages] == [32, 32, 32, 32, sum(expected.values()) - 128]
    assert [page.prompt for page in pages][:2] == ["Lines 1-32", "Lines 33-64"]


async def test_one_line_per_number_named_by_its_kind(people: Client) -> None:
    pages = await walk(people, URL_)
    assert names_of(pages, 5) == [
        ("Person 005", "+4930100005"),  # written twice, listed once
        ("Person 005 (work 2)", "+4930900005"),
        ("Person 005 (mobile)", "+49171200005"),
    ]
    assert names_of(pages, 6) == [
        ("Person 006", "+4930100006"),
        ("Person 006 (mobile)", "+49171200006"),
        ("Person 006 (home)", "+4989300006"),
    ]
    awkward = [name for name, _ in names_of(pages, 7)]
    assert awkward == [person_name(7), 'Person 007 A & <B> "c" (mobile)']
    assert names_of(pages, 21)[0] == ("Person 021 田中 博", "+4930100021")
    # No SIP address (person 9 has one), no number with letters in it (person 11).
    assert [number for _, number in names_of(pages, 9)] == dialled(9)
    assert [number for _, number in names_of(pages, 11)] == ["+4930100011", "+49171200011"]
    # A long name is cut so that the kind stays readable.
    long = names_of(pages, 17)
    assert [name for name, _ in long] == [
        "Person 017 Maximilian-Alexander",  # 32 characters, the trailing space dropped
        "Person 017 Maximilian-A (mobile)",
    ]


async def test_search_through_the_input_object_covers_everyone(people: Client) -> None:
    first = read_page(await fetch(people, URL_))
    form = etree.fromstring(await fetch(people, first.keys["Search"]), PARSER)
    assert form.tag == "CiscoIPPhoneInput"
    assert [element.tag for element in form] == ["Title", "Prompt", "URL", "InputItem"]
    item = form.find("InputItem")
    assert item is not None
    assert [field.tag for field in item] == [
        "DisplayName", "QueryStringParam", "DefaultValue", "InputFlags"
    ]  # fmt: skip
    assert item.findtext("InputFlags") == "A"
    param, target = item.findtext("QueryStringParam") or "", form.findtext("URL") or ""
    assert "?" not in target  # the phone appends `?q=…`

    def typed(text: str) -> str:
        return f"{target}?{urlencode({param: text})}"

    found = await walk(people, typed("jürgen"))
    assert found[0].title == "Search: jürgen"
    # Person 72 is past the cap: search sees the whole book.
    assert numbers_of(found) == Counter(dialled(13) + dialled(72))
    assert found[0].lines[0] == (person_name(13), "+4930100013")
    by_number = await walk(people, typed("+49 171 200072"))
    assert [number for _, number in by_number[0].lines] == dialled(72)
    # A search of many pages: Next keeps the term, and every number comes once.
    everyone = await walk(people, typed("person"))
    assert numbers_of(everyone) == Counter(n for i in range(1, PEOPLE + 1) for n in dialled(i))
    assert all(parse_qs(urlsplit(p.next).query)["q"] == ["person"] for p in everyone if p.next)
    # Search from a result page starts from its term.
    again = etree.fromstring(await fetch(people, everyone[1].keys["Search"]), PARSER)
    assert again.findtext("InputItem/DefaultValue") == "person"
    nobody = read_page(await fetch(people, typed("zzzqqq")))
    assert (nobody.lines, nobody.prompt, nobody.next) == ([], "No match", None)


async def test_the_menu_for_url_directories(people: Client) -> None:
    menu = etree.fromstring(await fetch(people, URL_ + "?form=menu"), PARSER)
    assert menu.tag == "CiscoIPPhoneMenu"
    items = {item.findtext("Name"): item.findtext("URL") or "" for item in menu.iter("MenuItem")}
    assert set(items) == {"Search", "All contacts"}
    search = etree.fromstring(await fetch(people, items["Search"]), PARSER)
    assert search.tag == "CiscoIPPhoneInput"
    assert read_page(await fetch(people, items["All contacts"])).lines


async def test_a_smaller_limit_pages_the_same_lines(people: Client) -> None:
    pages = await walk(people, URL_ + "?limit=7")
    assert {len(page.lines) for page in pages[:-1]} == {7}
    assert numbers_of(pages) == numbers_of(await walk(people, URL_))
    assert len(read_page(await fetch(people, URL_ + "?limit=500")).lines) == PAGE_SIZE


async def test_a_page_past_the_end_is_empty_and_leads_back(people: Client) -> None:
    past = read_page(await fetch(people, URL_ + "?offset=100000"))
    assert (past.lines, past.prompt, past.next) == ([], "No entries", None)
    assert past.previous is not None
    last = read_page(await fetch(people, past.previous))
    assert len(last.lines) == PAGE_SIZE and last.next is None


@pytest.mark.parametrize(
    "query",
    ["form=evil", "form=" + "x" * 500, "form=%00", "form=search%0a"],
)
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


async def test_a_percent_encoded_xui_pages_too(people: Client) -> None:
    encoded = "/phonebook/cisco/users/sip%3Aalice%40example.com/tbook"
    pages = await walk(people, encoded)
    assert numbers_of(pages) == numbers_of(await walk(people, URL_))


async def test_each_user_gets_links_to_their_own_book(people: Client) -> None:
    await fetch(people, URL_)  # alice's first page, now cached
    bob = read_page(await fetch(people, "/phonebook/cisco/users/sip:bob@example.com/tbook"))
    assert bob.next is not None and "bob@example.com" in bob.next


@pytest.mark.parametrize(
    ("host", "start"),
    [
        ("gw.example.com:8080", "http://gw.example.com:8080/phonebook/"),
        ("[::1]:80", "http://[::1]:80/phonebook/"),
        ("evil.example/x?y=", "/phonebook/"),
        ("a b", "/phonebook/"),
        ("", "/phonebook/"),
    ],
)
async def test_links_are_absolute_only_for_a_host_name(
    people: Client, host: str, start: str
) -> None:
    response = await people.get(URL_, headers={"Host": host})
    page = read_page(await response.read())
    assert page.next is not None and page.next.startswith(start), page.next


async def test_links_take_the_scheme_a_tls_proxy_names(people: Client) -> None:
    headers = {"Host": "gw.example.com", "X-Forwarded-Proto": "https"}
    page = read_page(await (await people.get(URL_, headers=headers)).read())
    assert page.next is not None and page.next.startswith("https://gw.example.com/phonebook/")


async def test_many_hosts_do_not_push_the_polled_lists_out_of_the_cache(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    from gateway import phonebook_views

    config = make_config(document='formats = ["cisco", "yealink"]')
    client = await aiohttp_client(create_app(config))
    yealink = f"/phonebook/yealink/users/{USER}/tbook"
    assert (await client.get(yealink)).status == 200
    for i in range(phonebook_views.CACHED_RENDERINGS + 10):
        assert (await client.get(URL_, headers={"Host": f"h{i}.example"})).status == 200
    cached = client.app[phonebook_views._CACHE]
    assert any(key[0] == "yealink" for key in cached)
    assert len(client.app[phonebook_views._URL_CACHE]) == phonebook_views.CACHED_RENDERINGS
