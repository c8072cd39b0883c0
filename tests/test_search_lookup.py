"""Search and caller-ID lookup: the index over the whole composition (the cap aside),
names by word prefix without case or accents, numbers raw and on their E.164 form, the
lookup endpoint as a PBX calls it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree

from gateway import index_build
from gateway.app import create_app
from gateway.entry import Entry
from gateway.numbers import NumberFormat
from gateway.search_index import SearchIndex
from tests.conftest import ConfigFactory
from tests.format_contract import USER, card

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
LOOKUP = f"/phonebook/lookup/users/{USER}/tbook"


def person(name: str, company: str = "", **numbers: tuple[str, ...]) -> Entry:
    fields: dict[str, str | tuple[str, ...]] = dict(numbers)
    if company:
        fields["company"] = company
    return Entry(name.lower().replace(" ", "-"), name, fields)


BOOK = [
    person("Jürgen Müller", "Ben & Jerry's", business_number=("+49 (1234) 5678",)),
    person("Anna Schmidt", mobile_number=("0171 5550100",), business_number=("030 1234567",)),
    person("Reception", business_number=("1234",)),
    person("Voicemail", business_number=("*86#",)),
    person("John Smith", "Acme", home_number=("+1 212 555 0100",)),
]


@pytest.fixture(params=["here", "in a worker process"])
def index(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> SearchIndex:
    """Built here, and as a big book's is, in a worker process (its tables pickled there
    and back piece by piece): both must answer alike."""
    if request.param != "here":
        monkeypatch.setattr(index_build, "ELSEWHERE_FROM", 1)
        monkeypatch.setattr(index_build, "_PIECE", 2)
        monkeypatch.setattr(index_build, "build", not_here)  # the worker's is its own
    return SearchIndex(BOOK, NumberFormat("as-stored", "DE"))


def not_here(*args: object) -> None:
    raise AssertionError("built in this process, not in a worker")


def names(entries: object) -> list[str]:
    return [e.display_name for e in entries]  # type: ignore[attr-defined]


def test_names_match_by_word_prefix_without_case_or_accents(index: SearchIndex) -> None:
    assert names(index.search("mull")) == ["Jürgen Müller"]
    assert names(index.search("JURG mü")) == ["Jürgen Müller"]
    assert names(index.search("ben jer")) == ["Jürgen Müller"]  # the company
    assert names(index.search("üller")) == []  # a prefix, not any substring
    assert names(index.search("sm")) == ["John Smith"]
    assert names(index.search("sch")) == ["Anna Schmidt"]
    assert names(index.search("a")) == ["Anna Schmidt", "John Smith"]  # Acme: the company


def test_numbers_match_by_digits_raw_and_on_their_e164_form(index: SearchIndex) -> None:
    assert names(index.search("01234 5678")) == ["Jürgen Müller"]  # stored +49 (1234) 5678
    assert names(index.search("+49 30 1234")) == ["Anna Schmidt"]  # stored 030 1234567
    assert names(index.search("030 12")) == ["Anna Schmidt"]
    assert names(index.search("555 0100")) == ["Anna Schmidt", "John Smith"]
    assert names(index.search("99999")) == []


def test_lookup_matches_the_e164_form_both_ways(index: SearchIndex) -> None:
    found = index.lookup("01234 5678")
    assert found is not None and found.entry.display_name == "Jürgen Müller"
    assert found.number == "+49 (1234) 5678" and found.kind == "business"
    for dialled in ("+49301234567", "0049 30 1234567", "030/123 45 67", "301234567"):
        hit = index.lookup(dialled)
        assert hit is not None and hit.entry.display_name == "Anna Schmidt", dialled
    hit = index.lookup("+12125550100")
    assert hit is not None and hit.kind == "home"


def test_extensions_and_codes_never_get_a_country_code(index: SearchIndex) -> None:
    reception = index.lookup("1234")
    assert reception is not None and reception.entry.display_name == "Reception"
    voicemail = index.lookup("*86#")
    assert voicemail is not None and voicemail.entry.display_name == "Voicemail"
    assert index.lookup("+49 1234") is None  # not the extension 1234 with a country code
    assert index.lookup("86") is None


def test_a_suffix_shorter_than_the_national_number_is_no_match(index: SearchIndex) -> None:
    assert index.lookup("5678") is None
    assert index.lookup("345678") is None
    assert index.lookup("1234567") is None  # Anna's is 301234567: seven of nine digits
    assert index.lookup("") is None and index.lookup("x" * 5000) is None


async def serve(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path, document: str
) -> Client:
    return await aiohttp_client(create_app(make_config(document=document)))


@pytest.fixture
async def capped(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> Client:
    """The demo book plus 60 numbered people, capped at 10 entries."""
    for i in range(60):
        (contacts_dir / f"p{i:02}.vcf").write_text(
            card(f"p{i}", f"Zed Person{i:02}", ("WORK", f"+49 40 5550{i:04}")), encoding="utf-8"
        )
    config = 'formats = ["counterpath", "yealink"]\ndefault_region = "DE"\nmax_entries = 10'
    return await aiohttp_client(create_app(make_config(document=config)))


def yealink_names(body: bytes) -> list[str]:
    return [e.findtext("Name") or "" for e in etree.fromstring(body).iter("DirectoryEntry")]


async def test_search_looks_past_the_cap(capped: Client) -> None:
    url = f"/phonebook/yealink/users/{USER}/tbook"
    listed = yealink_names(await (await capped.get(url)).read())
    assert len(listed) == 10 and "Zed Person59" not in listed
    found = yealink_names(await (await capped.get(url, params={"q": "person59"})).read())
    assert found == ["Zed Person59"]
    by_number = yealink_names(await (await capped.get(url, params={"q": "040 55500059"})).read())
    assert by_number == ["Zed Person59"]


async def test_lookup_answers_json_text_and_404(capped: Client) -> None:
    response = await capped.get(LOOKUP, params={"number": "040 5550 0042"})
    assert response.status == 200 and response.content_type == "application/json"
    answer = json.loads(await response.read())
    assert answer["name"] == "Zed Person42" and answer["number"] == "+49 40 55500042"
    assert answer["kind"] == "business"
    text = await capped.get(
        LOOKUP, params={"number": "+494055500042"}, headers={"Accept": "text/plain"}
    )
    assert text.status == 200 and await text.text() == "Zed Person42"
    plain = await capped.get(LOOKUP, params={"number": "+494055500042", "format": "text"})
    assert await plain.text() == "Zed Person42"
    missing = await capped.get(
        LOOKUP, params={"number": "+49 40 99999999"}, headers={"Accept": "text/plain"}
    )
    assert missing.status == 404 and await missing.text() == ""
    assert (await capped.get(LOOKUP, params={"number": "0042"})).status == 404


@pytest.mark.parametrize(
    "query", ["", "number=", "number=%00", "number=" + "1" * 5000, "number=%ZZ", "number=**"]
)
async def test_hostile_lookups_are_400_or_404(capped: Client, query: str) -> None:
    response = await capped.get(LOOKUP + "?" + query)
    assert response.status in (400, 404), query


async def test_lookup_is_read_only_and_needs_a_document(capped: Client) -> None:
    assert (await capped.post(LOOKUP + "?number=1234")).status == 405
    assert (await capped.get(f"/phonebook/lookup/users/{USER}/nope?number=1")).status == 404


def test_a_search_without_a_limit_gives_at_most_a_search_page() -> None:
    from gateway.formats import Query
    from gateway.formats.search import SEARCH_PAGE, select

    many = [person(f"Anna {i:05}", business_number=(f"+49 30 {i:07}",)) for i in range(1500)]
    page = select(many, Query(q="anna"))
    assert len(page.entries) == SEARCH_PAGE and page.total == 1500 and page.more
    assert len(select(many, Query(q="anna", limit=1000)).entries) == 1000
    assert len(select(many, Query()).entries) == 1500  # the list itself is the document's


def test_a_longer_number_ending_in_a_stored_one_is_no_match() -> None:
    essen = person("Essen Contact", business_number=("+49 201 5550123",))
    index = SearchIndex([essen], NumberFormat("as-stored", "DE"))
    assert index.lookup("2015550123") is not None  # the national number itself
    assert index.lookup("12015550123") is None  # +1 201-555-0123 without its +
    assert index.lookup("98765432012015550123") is None


@pytest.mark.parametrize(("region", "extension"), [("DE", "1640"), ("AT", "12000"), ("FR", "4711")])
def test_an_extension_never_gets_a_country_code_nor_is_shown_with_one(
    region: str, extension: str
) -> None:
    numbers = NumberFormat("e164", region)
    assert numbers.e164(extension) is None
    assert numbers(extension) == extension  # what the phone dials stays the extension
    reception = person("Reception", business_number=(extension,))
    index = SearchIndex([reception], numbers)
    found = index.lookup(extension)
    assert found is not None and found.entry is reception


async def test_a_name_with_a_newline_is_one_line_in_text(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    (contacts_dir / "m.vcf").write_text(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:m\r\nFN:Mallory\\nP-Asserted-Identity: x\r\n"
        "TEL;TYPE=WORK:+49 30 5550777\r\nEND:VCARD\r\n",
        encoding="utf-8",
    )
    client = await aiohttp_client(create_app(make_config(document='default_region = "DE"')))
    text = await client.get(LOOKUP, params={"number": "030 5550777", "format": "text"})
    assert text.status == 200 and "\n" not in await text.text()
    assert (await text.text()).startswith("Mallory")


def test_while_a_new_index_is_built_ahead_the_previous_one_answers() -> None:
    from gateway.directory import Directory

    numbers = NumberFormat("as-stored", "DE")
    old = Directory(BOOK, BOOK, numbers)
    assert old.lookup("1234") is not None  # builds the old index
    renamed = [person("Front Desk", business_number=("1234",)), *BOOK[:2]]
    new = Directory(renamed, renamed, numbers, previous=old)
    build = new.build_ahead()
    stand_in = new.lookup("1234")
    assert stand_in is not None and stand_in.entry.display_name == "Reception"  # old data
    assert not new.indexed
    build()
    fresh = new.lookup("1234")
    assert fresh is not None and fresh.entry.display_name == "Front Desk"
    # Without a build ahead, a new composition never answers from the old one.
    direct = Directory(renamed, renamed, numbers, previous=old)
    found = direct.lookup("1234")
    assert found is not None and found.entry.display_name == "Front Desk"


def test_the_next_index_reuses_the_previous_numbers_readings() -> None:
    from gateway.directory import Directory

    numbers = NumberFormat("as-stored", "DE")
    old = Directory(BOOK, BOOK, numbers)
    old.search_index()
    assert old.search_index().reading("0171 5550100") == ("+491715550100", "1715550100")
    new = Directory(BOOK, BOOK, numbers, previous=old)
    assert new.search_index().readings == old.search_index().readings
    other_region = Directory(BOOK, BOOK, NumberFormat("as-stored", "AT"), previous=old)
    reading = other_region.search_index().reading("0171 5550100")
    assert reading is not None and reading[0].startswith("+43")  # not the old region's


def test_numbers_are_found_as_shown_and_on_their_e164_form() -> None:
    shown = NumberFormat("national", "DE", "0")  # the phone shows 00301234567
    erika = person("Erika", business_number=(shown("+49 30 1234567"),))
    assert erika.get("business_number") == ("00301234567",)
    index = SearchIndex([erika], shown)
    for term in ("0301234", "030 1234567", "00301234567", "1234567", "+49301234567"):
        assert names(index.search(term)) == ["Erika"], term
    spelled = person("Otto", business_number=("+49 (0)30 7654321 ext 12",))
    index = SearchIndex([spelled], NumberFormat("as-stored", "DE"))
    for term in ("+49 (0)30 765", "+49030", "030 7654321", "7654321 12"):
        assert names(index.search(term)) == ["Otto"], term


@pytest.mark.parametrize(
    ("region", "stored", "e164"),
    [
        ("BR", "(11) 96123-4567", "+5511961234567"),
        ("CN", "131 2345 6789", "+8613123456789"),
        ("AU", "1800 123 456", "+611800123456"),
        ("US", "212 555 0100", "+12125550100"),
    ],
)
def test_national_numbers_written_as_their_country_writes_them_get_their_e164(
    region: str, stored: str, e164: str
) -> None:
    numbers = NumberFormat("e164", region)
    assert numbers.e164(stored) == e164 and numbers(stored) == e164
    found = SearchIndex([person("Someone", business_number=(stored,))], numbers).lookup(e164)
    assert found is not None


def test_a_national_number_is_looked_up_in_the_documents_country_only() -> None:
    vienna = person("Vienna", business_number=("+43 1 4000",))
    index = SearchIndex([vienna], NumberFormat("as-stored", "DE"))
    assert index.lookup("14000") is None  # an extension here, not Austria's 1 4000
    assert index.lookup("+4314000") is not None


def test_an_underscore_separates_words() -> None:
    support = person("IT_Support", "ACME_Services", business_number=("+49 30 1",))
    index = SearchIndex([support], NumberFormat())
    assert names(index.search("support")) == ["IT_Support"]
    assert names(index.search("serv")) == ["IT_Support"]


def test_a_composition_made_while_the_last_index_was_still_building_keeps_the_stand_in() -> None:
    from gateway.directory import Directory

    numbers = NumberFormat("as-stored", "DE")
    first = Directory(BOOK, BOOK, numbers)
    first.search_index()
    second = Directory(BOOK, BOOK, numbers, previous=first)
    second.build_ahead()  # announced, not yet run
    third = Directory(BOOK[:2], BOOK[:2], numbers, previous=second)
    build = third.build_ahead()
    found = third.lookup("1234")  # answered by the first index meanwhile
    assert found is not None and found.entry.display_name == "Reception"
    build()
    assert third.lookup("1234") is None  # Reception is not in the third composition
    assert third.search_index().reading("0171 5550100") is not None


def test_matches_come_in_the_documents_order_though_composed_in_the_sources() -> None:
    from gateway.directory import Directory
    from gateway.listing import order_key

    composed = [
        person(n, business_number=(f"+49 30 {i}",))
        for i, n in enumerate(["Zoe A", "Ärger A", "Anna A"])
    ]
    directory = Directory(composed[:1], composed, NumberFormat(), order=order_key("display"))
    assert names(directory.search("a")) == ["Anna A", "Ärger A", "Zoe A"]
    assert names(directory.everyone) == ["Anna A", "Ärger A", "Zoe A"]
    assert directory.size == 3 and len(directory) == 1


def test_a_number_two_contacts_share_finds_the_first_in_the_documents_order() -> None:
    from gateway.directory import Directory
    from gateway.listing import order_key

    zora = person("Zora Zed", business_number=("+49 30 2094 1100",))
    anna = person("Anna Müller", business_number=("+49 30 2094 1100",))
    # Composed Zora first (her card's file name comes first); listed, Anna comes first.
    directory = Directory([anna, zora], [zora, anna], NumberFormat(), order=order_key("display"))
    found = directory.lookup("+493020941100")
    assert found is not None and found.entry is anna


def test_a_lookup_takes_the_first_entry_in_the_documents_order_whatever_the_table() -> None:
    """The compact tables must answer as the dicts did (found by a red-team diff): the
    first entry in document order among those a national number or raw digits name."""
    italy = NumberFormat("as-stored", "IT")
    exact = person("Exact", business_number=("+39 612345678",))
    rome = person("Rome office", business_number=("+39 06 1234 5678",))
    for book in ([exact, rome], [rome, exact]):
        found = SearchIndex(book, italy).lookup("612345678")
        assert found is not None and found.entry is book[0]
    both = person("Same contact", business_number=("+39 301234567",), home_number=("0301234567",))
    found = SearchIndex([both], italy).lookup("301234567")
    assert found is not None and found.number == "+39 301234567"
    berlin = person("Berlin", home_number=("+4930123456",))
    trunk = person("Trunk", business_number=("sip:+4930123456@pbx",))
    found = SearchIndex([berlin, trunk], NumberFormat()).lookup("sip:+4930123456@pbx")
    assert found is not None and found.entry is berlin


def test_the_three_hundredth_number_of_an_entry_is_looked_up_too() -> None:
    numbers = tuple(f"+49 30 1000{n:03d}" for n in range(300))
    switchboard = person("Switchboard", business_number=numbers)
    index = SearchIndex([person("Other"), switchboard], NumberFormat("as-stored", "DE"))
    for asked in ("+49 30 1000299", "030 1000299"):
        found = index.lookup(asked)
        assert found is not None and found.entry is switchboard and found.number == numbers[299]
