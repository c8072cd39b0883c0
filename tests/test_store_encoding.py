"""A lone surrogate must not cost a source its snapshot.

An upstream card's `X-XCAP-PROP;X-NAME=%ED%A0%80` percent-decoded (surrogatepass) to a lone
surrogate, which UTF-8 cannot encode: SQLite refused the whole snapshot of the source, so
nothing was stored, and a per-user book's first GET was a 500. The name is now kept as
written; and whatever a contact holds, the store writes it in a form SQLite takes and
`decode` gives back exactly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient

from connectors.vcard_lines import decode_param, encode_param
from gateway.app import create_app
from gateway.config import load_config
from gateway.engine import Engine
from gateway.model import Contact, UserRef
from gateway.store import decode, encode
from gateway.store_sqlite import FILE_NAME
from gateway.store_sqlite import SqliteStore as Store
from tests.conftest import ConfigFactory, drained, write_config

Client = TestClient[web.Request, web.Application]
ALICE = UserRef("alice@example.com")
ODD = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:odd\r\nFN:Odd One\r\nTEL;TYPE=CELL:+49 171 2\r\n"
    "X-XCAP-PROP;X-NAME=%ED%A0%80:value\r\nEND:VCARD\r\n"
)
ANN = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:ann\r\nFN:Ann Example\r\nTEL;TYPE=CELL:+49 171 1\r\n"
    "END:VCARD\r\n"
)
SURROGATES = Contact(
    uid="u\ud800",
    source="s",
    href="a.vcf",
    etag="e",
    display_name="Ann \udfff Müller",
    mobile=("+49 1", "\udc80"),
    extra=(("\ud800", "v\udbff"), ("nick", "Än")),
)


def test_a_name_that_is_not_utf8_text_is_kept_as_written() -> None:
    assert decode_param("%ED%A0%80") == "%ED%A0%80"  # a lone surrogate
    assert decode_param("%ED%A0%80%C3%A4") == "%ED%A0%80%C3%A4"
    assert decode_param("%FF") == "%FF"
    assert decode_param("%C3%A4%20b") == "ä b"
    for name in ("ä b", "a;b:c,d", "50%", "日本語#1"):
        assert decode_param(encode_param(name)) == name


def test_a_contact_with_lone_surrogates_is_stored_and_read_back_exactly(
    tmp_path: Path,
) -> None:
    text = encode(SURROGATES)
    text.encode("utf-8")  # what SQLite needs
    assert decode(text) == SURROGATES
    store = Store(tmp_path / "state.sqlite3")
    store.save("s", "", "fp", None, 1.0, [SURROGATES, SURROGATES.replace(href="b.vcf")])
    store.close()
    snapshot = Store(tmp_path / "state.sqlite3").load("s", "", "fp")
    assert snapshot is not None
    assert snapshot.contacts["a.vcf"] == SURROGATES
    assert snapshot.contacts["b.vcf"] == SURROGATES.replace(href="b.vcf")


def test_text_without_surrogates_is_stored_as_it_was() -> None:
    plain = SURROGATES.replace(
        uid="u", display_name="Anna Müller 日本", mobile=("+49 1",), extra=(("nick", "Än"),)
    )
    text = encode(plain)
    assert "Anna Müller 日本" in text and "\\u" not in text
    assert decode(text) == plain


def stored_rows(db: Path, where: str, *args: str) -> list[str]:
    with sqlite3.connect(db) as connection:
        return [row[0] for row in connection.execute(f"SELECT data FROM contacts {where}", args)]


async def test_a_shared_source_with_an_odd_card_keeps_its_snapshot(
    make_config: ConfigFactory, contacts_dir: Path
) -> None:
    (contacts_dir / "odd.vcf").write_text(ODD, encoding="utf-8", newline="")
    config = make_config()
    engine = Engine(config)
    await engine.start()
    try:
        rendered = await engine.document("tbook", ALICE)
        assert b"Odd One" in rendered.body
        assert b'name="%ED%A0%80"' in rendered.body  # kept as written
    finally:
        await engine.stop()
    rows = stored_rows(config.server.state_dir / FILE_NAME, "WHERE source = ?", "demo")
    assert len(rows) == len(rendered.entries) == 29  # the demo's 28 and the odd one
    (odd,) = [decode(row) for row in rows if decode(row).uid == "odd"]
    assert odd.extra == (("%ED%A0%80", "value"),)


async def test_a_per_user_book_with_an_odd_card_is_served_and_stored(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]], tmp_path: Path
) -> None:
    book = tmp_path / "books" / "alice"
    book.mkdir(parents=True)
    (book / "a.vcf").write_text(ANN, encoding="utf-8", newline="")
    (book / "odd.vcf").write_text(ODD, encoding="utf-8", newline="")
    config = load_config(
        write_config(
            tmp_path,
            f"""
[server]
listen = "127.0.0.1:0"
state_dir = "var"

[sources.mine]
type = "vcard-dir"
path = "{tmp_path}/books/{{user}}"

[documents.tbook]
name = "tbook.xml"
sources = ["mine"]
write_to = "mine"
""",
        )
    )
    client = await aiohttp_client(create_app(config))
    first = await client.get("/users/sip:alice@example.com/tbook.xml")
    assert first.status == 200, await first.text()
    body = await first.read()
    assert b"Odd One" in body and b"Ann Example" in body
    db = config.server.state_dir / FILE_NAME
    assert len(stored_rows(db, "WHERE source = ? AND user LIKE 'alice%'", "mine")) == 2
    # A phone renames the odd contact: the edit reaches the card, whose odd line stays.
    response = await client.put(
        "/users/sip:alice@example.com/tbook.xml",
        data=body.replace(b">Odd One<", b">Odd Renamed<"),
        headers={
            "Content-Type": "application/resource-lists+xml",
            "If-Match": first.headers["ETag"],
        },
    )
    assert response.status == 200, await response.text()
    await drained(client)
    card = (book / "odd.vcf").read_text(encoding="utf-8")
    assert "FN:Odd Renamed" in card and "X-XCAP-PROP;X-NAME=%ED%A0%80:value" in card
    rows = [decode(row) for row in stored_rows(db, "WHERE source = ?", "mine")]
    assert {contact.display_name for contact in rows} == {"Ann Example", "Odd Renamed"}
