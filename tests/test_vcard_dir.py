"""The vcard-dir connector: the contract, and what a folder of real files adds to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.vcard_dir import VcardDirConnector, VcardDirSettings
from gateway.connector import NotFound, Unavailable, load_connector_class
from gateway.model import UserRef
from tests.connector_contract import SAMPLE, ConnectorContract, listing


def make(folder: Path, user: UserRef | None = None, version: str = "3.0") -> VcardDirConnector:
    return VcardDirConnector("book", VcardDirSettings(path=folder, version=version), user)  # type: ignore[arg-type]


class TestVcardDirContract(ConnectorContract):
    @pytest.fixture(params=["3.0", "4.0"])
    def connector(self, tmp_path: Path, request: pytest.FixtureRequest) -> VcardDirConnector:
        folder = tmp_path / "book"
        folder.mkdir()
        return make(folder, version=request.param)


def test_registered_as_an_entry_point() -> None:
    assert load_connector_class("vcard-dir") is VcardDirConnector


MULTI = """BEGIN:VCARD\r
VERSION:3.0\r
UID:one\r
FN:One\r
TEL;TYPE=WORK:1\r
END:VCARD\r
BEGIN:VCARD\r
VERSION:3.0\r
UID:two\r
FN:Two\r
TEL;TYPE=WORK:2\r
END:VCARD\r
BEGIN:VCARD\r
VERSION:3.0\r
FN:No UID\r
END:VCARD\r
"""


async def test_a_file_with_many_cards_is_edited_one_card_at_a_time(tmp_path: Path) -> None:
    (tmp_path / "team.vcf").write_bytes(MULTI.encode())
    connector = make(tmp_path)
    hrefs = await listing(connector)
    assert sorted(hrefs) == ["team.vcf#0", "team.vcf#one", "team.vcf#two"]
    two = await connector.get("team.vcf#two")
    await connector.update(two.href, two.replace(business=("22",)), two.etag)
    text = (tmp_path / "team.vcf").read_bytes().decode()
    assert text == MULTI.replace("TEL;TYPE=WORK:2", "TEL;TYPE=WORK:22")
    one = await connector.get("team.vcf#one")
    await connector.delete(one.href, one.etag)
    assert (tmp_path / "team.vcf").read_text().count("BEGIN:VCARD") == 2
    assert (await connector.get("team.vcf#0")).display_name == "No UID"


async def test_deleting_the_last_card_removes_the_file(tmp_path: Path) -> None:
    connector = make(tmp_path)
    stored = await connector.create(SAMPLE)
    await connector.delete(stored.href, stored.etag)
    assert list(tmp_path.iterdir()) == []


async def test_created_files_are_named_after_the_entry_id(tmp_path: Path) -> None:
    stored = await make(tmp_path).create(SAMPLE)
    assert stored.href == f"{SAMPLE.entry_id}.vcf"
    assert stored.entry_id == SAMPLE.entry_id
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


async def test_a_missing_folder_is_an_error_unless_it_is_per_user(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="does not exist"):
        await listing(make(tmp_path / "missing"))
    personal = make(tmp_path / "alice", user=UserRef("alice@example.com"))
    assert await listing(personal) == {}
    stored = await personal.create(SAMPLE)
    assert (tmp_path / "alice" / stored.href).is_file()


async def test_a_file_that_is_not_utf8_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "latin1.vcf").write_bytes(
        "BEGIN:VCARD\nFN:J\xfcrgen\nEND:VCARD\n".encode("latin-1")
    )
    with pytest.raises(Unavailable, match="latin1.vcf is not UTF-8"):
        await listing(make(tmp_path))


@pytest.mark.parametrize("href", ["../outside.vcf", "/etc/passwd", ".hidden.vcf", "x.txt"])
async def test_hrefs_never_leave_the_folder(tmp_path: Path, href: str) -> None:
    (tmp_path.parent / "outside.vcf").write_text(MULTI)
    with pytest.raises(NotFound):
        await make(tmp_path).get(href)


async def test_a_file_edited_on_disk_is_seen_at_the_next_listing(tmp_path: Path) -> None:
    connector = make(tmp_path)
    stored = await connector.create(SAMPLE)
    before = await listing(connector)
    path = tmp_path / stored.href
    path.write_text(path.read_text().replace("Ingénieur", "Architekt"))
    after = await listing(connector)
    assert after.keys() == before.keys() and after != before
    assert (await connector.get(stored.href)).profession == "Architekt"
