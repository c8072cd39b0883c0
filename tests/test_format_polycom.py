"""Polycom's local directory file, read as the phone reads it: `directory/item_list/item`
with `fn`, `ln`, `ct`, `lb`; names and labels at most 40 bytes of UTF-8, no `ct` empty or
twice, the whole file within 200 KB."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree

from gateway.app import create_app
from gateway.formats.polycom import MAX_FIELD_BYTES, MAX_FILE_BYTES, cut
from tests.conftest import ConfigFactory
from tests.format_contract import USER, FormatContract, card

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
URL = f"/phonebook/polycom/users/{USER}/tbook"


def items(body: bytes) -> list[etree._Element]:
    """The items, checked against the phone's rules."""
    assert len(body) <= MAX_FILE_BYTES
    root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    assert root.tag == "directory" and [c.tag for c in root] == ["item_list"]
    found = root.findall("item_list/item")
    for item in found:
        for tag in ("fn", "ln", "lb"):
            assert len((item.findtext(tag) or "").encode("utf-8")) <= MAX_FIELD_BYTES
        assert len(item.findall("ct")) == 1 and item.findtext("ct")
    contacts = [item.findtext("ct") for item in found]
    assert len(contacts) == len(set(contacts))  # never the same number twice
    return found


async def serve(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path, **cards: str
) -> Client:
    for name, text in cards.items():
        (contacts_dir / f"{name}.vcf").write_text(text, encoding="utf-8")
    config = make_config(document='formats = ["polycom"]\nmax_entries = 5000')
    return await aiohttp_client(create_app(config))


class TestPolycom(FormatContract):
    format = "polycom"

    def read(self, body: bytes) -> list[tuple[str, list[str]]]:
        return [
            (
                f"{item.findtext('fn') or ''} {item.findtext('ln') or ''}".strip(),
                [item.findtext("ct") or ""],
            )
            for item in items(body)
        ]

    async def test_one_item_per_number_labelled_with_its_kind(self, client: Client) -> None:
        response = await client.get(self.url())
        assert response.headers["Content-Type"].startswith("text/xml")
        anna = [
            (i.findtext("ct"), i.findtext("lb"))
            for i in items(await response.read())
            if (i.findtext("fn"), i.findtext("ln")) == ("Anna", "Müller")
        ]
        assert anna == [
            ("+493020941100", "Work"),
            ("+493020941101", "Work"),
            ("+491713344556", "Mobile"),
            ("anna.mueller@brandt-soehne.de", "SIP"),
        ]


def test_cut_keeps_40_bytes_and_whole_characters() -> None:
    assert cut("Anna") == "Anna"
    assert cut("Ж" * 30) == "Ж" * 20  # 40 bytes exactly
    assert cut("a" + "Ж" * 30) == "a" + "Ж" * 19  # 39 bytes: half a Ж is dropped
    assert cut("a" * 39 + "€") == "a" * 39
    assert cut("x\x00" * 50) == "x" * 40  # what XML cannot carry goes first


async def test_long_names_are_cut_and_a_number_is_listed_once(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await serve(
        aiohttp_client,
        make_config,
        contacts_dir,
        long=card("long", "x", ("WORK", "+49 30 7777"), extra=f"N:a{'Ж' * 30};{'€' * 20};;;\r\n"),
        twin=card("twin", "Twin", ("CELL", "+49-30-5555"), ("HOME", "+49 30 6666")),
        again=card("again", "Again", ("WORK", "(+49) 30 6666"), ("HOME", "+49 30 5555")),
    )
    found = items(await (await client.get(URL)).read())
    long = [i for i in found if i.findtext("ct") == "+49307777"]
    assert len(long) == 1
    assert long[0].findtext("ln") == "a" + "Ж" * 19
    assert long[0].findtext("fn") == "€" * 13  # 39 bytes
    # Twin and Again share both numbers written differently: whoever comes first in the
    # document gets them, the other is left out.
    shared = [
        (i.findtext("ln"), i.findtext("ct")) for i in found if i.findtext("ln") in ("Twin", "Again")
    ]
    assert sorted(ct or "" for _, ct in shared) == ["+49305555", "+49306666"]
    assert len({name for name, _ in shared}) == 1


async def test_3000_contacts_stay_within_200_kb(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    bulk = {
        f"bulk{i}": card(
            f"bulk{i}",
            f"Person Number {i}",
            ("WORK", f"+49 30 1{i:05d}"),
            ("CELL", f"+49 171 2{i:05d}"),
        )
        for i in range(3000)
    }
    client = await serve(aiohttp_client, make_config, contacts_dir, **bulk)
    response = await client.get(URL)
    body = await response.read()
    found = items(body)  # within 200 KB, well-formed, no number twice
    assert MAX_FILE_BYTES - 200 < len(body) <= MAX_FILE_BYTES  # stopped just before the limit
    assert 1000 < len(found) < 6000
    # The items kept are the document's first ones: the list stops, it does not skip.
    last = found[-1].findtext("ct") or ""
    assert last.startswith(("+49301", "+491712"))
    zipped = await client.get(URL, headers={"Accept-Encoding": "gzip"})
    assert await zipped.read() == body


async def test_a_given_name_alone_is_not_repeated_as_the_surname(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await serve(
        aiohttp_client,
        make_config,
        contacts_dir,
        solo=card("solo", "Solo", ("WORK", "+49 30 8888"), extra="N:;Solo;;;\r\n"),
    )
    (solo,) = [
        i for i in items(await (await client.get(URL)).read()) if i.findtext("ct") == "+49308888"
    ]
    assert solo.findtext("fn") == "Solo"
    assert not solo.findtext("ln")


def test_ct_is_digits_or_a_sip_address() -> None:
    from gateway.formats.polycom import dial_string

    assert dial_string("business_number", "+49 (30) 1234-5") == "+493012345"
    assert dial_string("business_number", "＋４９ ３０ １２") == "+493012"  # full-width
    assert dial_string("business_number", "٠٣٠١٢٣") == "030123"  # Arabic-Indic digits
    assert dial_string("business_number", "ext12") == ""  # left out: nothing to dial
    assert dial_string("sip_address", "sip:anna@example.com") == "sip:anna@example.com"


def test_superscripts_and_circled_numbers_are_no_digits() -> None:
    from gateway.formats.polycom import dial_string

    for number in ("030 1234567²", "⒈ 030 1234", "⑽⑾ 12"):
        assert dial_string("business_number", number) == "", number
