"""A vcard-dir folder read at scale: many files scanned in worker processes alike to here,
each file read and parsed once per sync, what the scan keeps small and never stale."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vobject.icalendar import stringToTextValues

from connectors import vcard_files
from connectors.vcard_dir import VcardDirConnector, VcardDirSettings
from connectors.vcard_lines import text_values
from gateway.connector import Unavailable
from gateway.model import Contact
from tests.connector_contract import listing

MULTI = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:one\r\nFN:One\r\nTEL;TYPE=WORK:1\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:two\r\nFN:Two\r\nTEL;TYPE=CELL:2\r\nEND:VCARD\r\n"
)


def card(number: int) -> str:
    return (
        f"BEGIN:VCARD\nVERSION:3.0\nUID:u{number}\nFN:Person {number}\nN:Last{number};First;;;\n"
        f"ORG:Firm\\, Inc.;Dept\nTEL;TYPE=WORK:+49 30 {number:07d}\nCATEGORIES:work,vip\n"
        "END:VCARD\n"
    )


def folder_of(tmp_path: Path, cards: int) -> Path:
    folder = tmp_path / "book"
    folder.mkdir()
    for number in range(cards):
        (folder / f"c{number:03d}.vcf").write_text(card(number))
    (folder / "team.vcf").write_bytes(MULTI.encode())
    return folder


def make(folder: Path) -> VcardDirConnector:
    return VcardDirConnector("book", VcardDirSettings(path=folder))  # type: ignore[arg-type]


async def read_all(connector: VcardDirConnector) -> dict[str, Contact]:
    hrefs = await listing(connector)
    return {c.href: c for c in await connector.get_many(hrefs)}


def not_here(*args: object) -> None:
    raise AssertionError("scanned in this process, not in a worker")


async def test_a_scan_in_worker_processes_reads_what_one_here_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_of(tmp_path, 7)
    here = await read_all(make(folder))
    monkeypatch.setattr(vcard_files, "PARALLEL_FROM", 2)
    monkeypatch.setattr(vcard_files, "BATCH", 3)
    # The workers have their own: these two would fail if the work were done here.
    monkeypatch.setattr(vcard_files, "list_file", not_here)
    monkeypatch.setattr(vcard_files, "parse_file", not_here)
    elsewhere = await read_all(make(folder))
    assert elsewhere == here
    assert len(here) == 9 and here["team.vcf#two"].mobile == ("2",)
    assert here["c003.vcf"].company == "Firm, Inc."


async def test_an_unreadable_file_fails_a_scan_in_workers_as_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_of(tmp_path, 4)
    (folder / "latin1.vcf").write_bytes(card(99).replace("Person", "Jos\xe9").encode("latin-1"))
    monkeypatch.setattr(vcard_files, "PARALLEL_FROM", 2)
    monkeypatch.setattr(vcard_files, "BATCH", 2)
    with pytest.raises(Unavailable, match="latin1.vcf is not UTF-8"):
        await listing(make(folder))


async def test_a_file_of_many_cards_is_parsed_once_for_all_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "book"
    folder.mkdir()
    (folder / "export.vcf").write_text("".join(card(n) for n in range(50)))
    connector = make(folder)
    hrefs = await listing(connector)
    parses: list[str] = []
    real = vcard_files.parse_file

    def counted(name: str, text: str) -> vcard_files.ParsedFile:
        parses.append(name)
        return real(name, text)

    monkeypatch.setattr(vcard_files, "parse_file", counted)
    connector._unread.clear()  # as when the scan was long ago: nothing kept from it
    found = await connector.get_many(hrefs)
    assert len(found) == 50 and parses == ["export.vcf"]


async def test_a_card_written_after_the_scan_is_fetched_as_written(tmp_path: Path) -> None:
    connector = make(folder_of(tmp_path, 2))
    listed = dict([pair async for pair in connector.list()])  # keeps its parses for get_many
    before = await connector.get("c001.vcf")
    await connector.update("c001.vcf", before.replace(display_name="Renamed"), listed["c001.vcf"])
    found = {c.href: c for c in await connector.get_many(list(listed))}
    assert found["c001.vcf"].display_name == "Renamed"
    assert found["c000.vcf"].display_name == "Person 0"


async def test_a_rescan_reads_only_the_files_that_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_of(tmp_path, 3)
    connector = make(folder)
    first = dict([pair async for pair in connector.list()])
    (folder / "c002.vcf").write_text(card(2).replace("Person 2", "Changed"))
    read: list[str] = []
    real = vcard_files.read_stamped

    def counted(where: Path, name: str) -> tuple[str, int]:
        read.append(name)
        return real(where, name)

    monkeypatch.setattr(vcard_files, "read_stamped", counted)
    second = dict([pair async for pair in connector.list()])
    assert read == ["c002.vcf"]
    assert {h for h in first if first[h] != second[h]} == {"c002.vcf"}


@given(st.text(alphabet=st.sampled_from('ab;,\\nN: "x'), max_size=12))
def test_text_values_read_as_vobject_reads(value: str) -> None:
    for separator in (None, ",", ";"):
        expected = [str(v) for v in stringToTextValues(value, listSeparator=separator)]
        assert text_values(value, separator) == expected


def test_a_contact_pickles_as_itself_and_shares_its_source_and_categories() -> None:
    one = Contact(uid="u", source="".join(["bo", "ok"]), categories=("work", "x"), vip=True)
    other = Contact(uid="v", source="".join(["bo", "ok"]), categories=("work", "x"))
    assert pickle.loads(pickle.dumps(one)) == one
    assert one.source is other.source
    assert one.categories is other.categories


async def test_a_stray_cr_before_a_fold_stays_out_of_the_value(tmp_path: Path) -> None:
    """Unfolded first, then the line end taken off, as before the fast path: else the
    UID read `one\\r`, and the card's href and entry_id changed on upgrade."""
    (tmp_path / "m.vcf").write_bytes(
        b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:one\r\r\n \r\nFN:Ann\r\r\n \r\nEND:VCARD\r\n"
        b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:two\r\nFN:Bob\r\nEND:VCARD\r\n"
    )
    found = await read_all(make(tmp_path))
    assert sorted(found) == ["m.vcf#one", "m.vcf#two"]
    assert found["m.vcf#one"].uid == "one" and found["m.vcf#one"].display_name == "Ann"


def test_shared_category_lists_are_bounded_in_size_too() -> None:
    from gateway import model

    many = tuple(f"category number {n:05d} of a card that has far too many" for n in range(2000))
    before = len(model._SHARED)
    assert Contact(uid="a", categories=many).categories == many
    assert len(model._SHARED) == before  # not kept for good


def test_a_contact_takes_what_a_connector_gave_as_before() -> None:
    # Third-party connectors may pass a list or None: no interning then, no TypeError.
    assert Contact(uid="x", categories=["work"]).categories == ["work"]  # type: ignore[arg-type]
    assert Contact(uid="x", source=None).source is None  # type: ignore[arg-type]
