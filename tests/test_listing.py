"""What goes into the composition, for every format alike: the display-name template,
the order (Unicode collation), category filters and contacts with nothing to dial."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree

from gateway import keys
from gateway.app import create_app
from gateway.config import ConfigError
from gateway.connector import Unavailable
from gateway.entry import Entry
from gateway.listing import admitted, formatted_name, ordered, template_error
from gateway.model import Contact, UserRef
from gateway.xcap import counterpath
from tests.conftest import ConfigFactory
from tests.format_contract import USER, card

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
XCAP = f"/users/{USER}/tbook.xml"
YEALINK = f"/phonebook/yealink/users/{USER}/tbook"


def test_the_template_fills_fields_and_falls_back() -> None:
    jane = Contact(uid="j", display_name="Dr. Jane Doe", given_name="Jane", surname="Doe")
    assert formatted_name("{surname}, {given}", jane, "x") == "Doe, Jane"
    acme = Contact(uid="a", company="Acme")
    assert formatted_name("{surname}, {given}", acme, "Acme") == "Acme"  # no ", " alone
    only = Contact(uid="o", surname="Doe")
    assert formatted_name("{surname}, {given}", only, "x") == "Doe"
    assert formatted_name("{given} {surname} ({company})", jane, "x") == "Jane Doe"


@pytest.mark.parametrize(
    "template", ["{given.__class__}", "{0}", "{nope}", "plain", "{given!r}", "{given:>99}", "{"]
)
def test_a_template_naming_no_field_is_refused(template: str) -> None:
    assert template_error(template) is not None


def test_categories_are_matched_without_case() -> None:
    assert admitted(["Work"], ["work"], [])
    assert not admitted(["friend"], ["work"], [])
    assert not admitted(["work", "VIP"], [], ["vip"])
    assert admitted([], [], ["vip"])


def test_the_order_is_unicode_collation_not_code_points() -> None:
    entries = [Entry(n, n) for n in ("Zoe", "Ärger", "apfel", "éclair", "Eva", "Öl", "Ohm")]
    assert [e.display_name for e in ordered(entries)] == [
        "apfel",
        "Ärger",
        "éclair",
        "Eva",
        "Ohm",
        "Öl",
        "Zoe",
    ]
    people = [
        Entry("1", "Anna Zorn", {"given_name": "Anna", "surname": "Zorn"}),
        Entry("2", "Zora Abel", {"given_name": "Zora", "surname": "Abel"}),
        Entry("3", "Acme", {}),
    ]
    assert [e.entry_id for e in ordered(people, "surname")] == ["2", "3", "1"]
    assert [e.entry_id for e in ordered(people, "given")] == ["3", "1", "2"]


def listed(body: bytes) -> list[str]:
    root = etree.fromstring(body)
    return [e.findtext("Name") or "" for e in root.iter("DirectoryEntry")]


def xcap_names(body: bytes) -> list[str]:
    ns = {"rl": "urn:ietf:params:xml:ns:resource-lists"}
    return [n.text or "" for n in etree.fromstring(body).iterfind(".//rl:display-name", ns)]


async def serve(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path, document: str
) -> Client:
    (contacts_dir / "nonumber.vcf").write_text(card("none", "Nobody Reachable"), encoding="utf-8")
    (contacts_dir / "vip.vcf").write_text(
        card("vip", "Victor Important", ("WORK", "+49 30 999"), extra="CATEGORIES:vip,Work\r\n"),
        encoding="utf-8",
    )
    config = 'formats = ["counterpath", "yealink"]\n' + document
    return await aiohttp_client(create_app(make_config(document=config)))


async def test_defaults_list_fn_sorted_and_skip_contacts_without_a_number(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await serve(aiohttp_client, make_config, contacts_dir, "")
    names = xcap_names(await (await client.get(XCAP)).read())
    assert "Nobody Reachable" not in names and "Anna Müller" in names
    assert names == [e.display_name for e in ordered([Entry(n, n) for n in names])]
    assert listed(await (await client.get(YEALINK)).read())[: len(names)] != []


async def test_the_keys_apply_to_every_format_alike(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    document = (
        'name_format = "{surname}, {given}"\nsort = "surname"\n'
        'include_categories = ["work", "colleague"]\nexclude_categories = ["VIP"]\n'
        "require_number = false\n"
    )
    client = await serve(aiohttp_client, make_config, contacts_dir, document)
    names = xcap_names(await (await client.get(XCAP)).read())
    assert "Müller, Anna" in names
    assert not any("Victor" in n or "Important" in n for n in names)  # excluded by vip
    assert "Nobody Reachable" in names  # no number, but require_number is off (work by default)
    assert all("Petersen" not in n for n in names) or "Petersen, Lars" in names
    surnames = [n.split(",")[0] for n in names if "," in n]
    assert surnames == sorted(surnames, key=lambda s: ordered([Entry(s, s)])[0].display_name)
    yealink = listed(await (await client.get(YEALINK)).read())
    assert [n for n in names if n != "Nobody Reachable"] == yealink  # yealink needs a number
    # The same filter holds for search: an excluded contact is found by no term.
    found = listed(await (await client.get(YEALINK, params={"q": "victor"})).read())
    assert found == []


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('name_format = "{nope}"', "name_format"),
        ('sort = "random"', "sort"),
        ('formats = ["lookup"]', "formats"),
        ('formats = ["no-such"]', "formats"),
        ("require_number = 3", "require_number"),
    ],
)
def test_bad_keys_are_config_errors_naming_the_key(
    make_config: ConfigFactory, line: str, said: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(document=line)
    assert said in str(caught.value)


LOBBY = """
[documents.lobby]
name = "lobby.xml"
sources = ["demo"]
formats = ["counterpath", "yealink"]
default_region = "DE"
exclude_categories = ["private"]
include_categories = ["work", "customers"]
"""


@pytest.mark.parametrize(
    ("categories", "name"),
    [("work,private", "Secret Private"), ("friends,customers", "Kim Customer")],
)
async def test_a_pending_edit_is_filtered_by_its_contacts_categories(
    aiohttp_client: ClientFactory,
    make_config: ConfigFactory,
    contacts_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    categories: str,
    name: str,
) -> None:
    """While a phone's edit waits for its upstream, another document's filters read the
    categories the contact has (all of them), not only the one the phone showed."""
    (contacts_dir / "x.vcf").write_text(
        card("x", name, ("WORK", "+49 30 1234567"), extra=f"CATEGORIES:{categories}\r\n"),
        encoding="utf-8",
    )
    client = await aiohttp_client(create_app(make_config(extra=LOBBY)))
    engine = client.app[keys.ENGINE]

    async def down(*args: object, **kwargs: object) -> object:
        raise Unavailable("upstream down for a moment")

    lobby = "/phonebook/yealink/users/sip:bob@example.com/lobby"
    shown_before = name in listed(await (await client.get(lobby)).read())
    monkeypatch.setattr(engine.sources.state("demo", UserRef("")).connector, "update", down)
    response = await client.get(XCAP)
    entries = counterpath.parse(await response.read())
    sent = [
        Entry(e.entry_id, e.display_name, {**e.fields, "comment": "call back"})
        if e.display_name == name
        else e
        for e in entries
    ]
    put = await client.put(XCAP, data=counterpath.render(sent))
    assert put.status == 200
    assert engine.outbox.users_waiting()  # the edit is pending
    assert (name in listed(await (await client.get(lobby)).read())) == shown_before
    lookup = await client.get(
        "/phonebook/lookup/users/sip:bob@example.com/lobby", params={"number": "030 1234567"}
    )
    assert (lookup.status == 200) == shown_before


ONLY_WORK = LOBBY.replace('exclude_categories = ["private"]\n', "").replace('"customers"', '"x"')


async def test_a_pending_creation_is_filtered_as_it_will_be_once_written(
    aiohttp_client: ClientFactory,
    make_config: ConfigFactory,
    contacts_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A contact a phone creates in category "private" is outside a document that
    includes only "work" (the source's default) while it waits upstream, as it will be
    once written (the overlay applies the category as write-back does)."""
    client = await aiohttp_client(create_app(make_config(extra=ONLY_WORK)))
    engine = client.app[keys.ENGINE]
    connector = engine.sources.state("demo", UserRef("")).connector

    async def down(*args: object, **kwargs: object) -> object:
        raise Unavailable("upstream down for a moment")

    monkeypatch.setattr(connector, "create", down)
    entries = counterpath.parse(await (await client.get(XCAP)).read())
    new = Entry(
        "11111111111111111111111111111111",
        "Private Newcomer",
        {"business_number": ("+49 30 7777777",), "category": "private"},
    )
    assert (await client.put(XCAP, data=counterpath.render([*entries, new]))).status == 200
    lobby = "/phonebook/yealink/users/sip:bob@example.com/lobby"
    assert engine.outbox.users_waiting()  # the creation is pending
    assert "Private Newcomer" not in listed(await (await client.get(lobby)).read())


def test_brackets_in_a_template_are_kept_and_empty_ones_dropped() -> None:
    jane = Contact(uid="j", display_name="Jane Doe", given_name="Jane", surname="Doe")
    acme = Contact(uid="a", display_name="Jane Doe", surname="Doe", company="Acme")
    assert formatted_name("{display} ({company})", acme, "x") == "Jane Doe (Acme)"
    assert formatted_name("{display} ({company})", jane, "x") == "Jane Doe"
    assert formatted_name("[{company}] {surname}", acme, "x") == "[Acme] Doe"
    assert formatted_name("{surname}, {given} (Sales)", jane, "x") == "Doe, Jane (Sales)"


def test_a_sort_locale_orders_as_its_language_does() -> None:
    names = [Entry(n, n) for n in ("Zorn", "Åsa", "Arne", "Öberg", "Ärger")]
    assert [e.display_name for e in ordered(names)] == ["Ärger", "Arne", "Åsa", "Öberg", "Zorn"]
    swedish = [e.display_name for e in ordered(names, locale="sv")]
    assert swedish == ["Arne", "Zorn", "Åsa", "Ärger", "Öberg"]
    german = [Entry(n, n) for n in ("Muller", "Müller", "Mueller", "Mzz")]
    phonebook = ordered(german, locale="de_DE@collation=phonebook")
    assert [e.display_name for e in phonebook] == ["Mueller", "Müller", "Muller", "Mzz"]


async def test_a_sort_locale_orders_every_format(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    for name in ("Zorn", "Åsa", "Arne"):
        (contacts_dir / f"{name}.vcf").write_text(
            card(name, name, ("WORK", f"+49 30 {len(name)}{ord(name[0])}")), encoding="utf-8"
        )
    client = await serve(aiohttp_client, make_config, contacts_dir, 'sort_locale = "sv"')
    names = [
        n for n in xcap_names(await (await client.get(XCAP)).read()) if n in ("Zorn", "Åsa", "Arne")
    ]
    assert names == ["Arne", "Zorn", "Åsa"]


@pytest.mark.parametrize("locale", ["xx", "no such thing", "@@"])
def test_an_unknown_sort_locale_is_a_config_error(make_config: ConfigFactory, locale: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(document=f'sort_locale = "{locale}"')
    assert "sort_locale" in str(caught.value)


@pytest.mark.parametrize(
    "locale", ["sv@", "de_DE@collation=phonebk", "de@collation=nonsense", "de\x00xx", "x" * 5000]
)
def test_a_sort_locale_icu_would_read_otherwise_is_refused(locale: str) -> None:
    from gateway.listing import locale_error

    problem = locale_error(locale)
    assert problem is not None and "sort_locale" in problem and len(problem) < 200
