"""The vcard-dir connector: the contract, and what a folder of real files adds to it."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


# --- an entry_id from a phone is data, never a path ------------------------------------------

HEX32_CARD = re.compile(r"[0-9A-F]{32}\.vcf")


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "entry_id",
    [
        "../escaped",
        "../../escaped",
        "<tmp>/absolute",
        "a/b",
        "..",
        ".hidden",
        "x\r\nTEL:1",
        "0a1b2c3d4e5f60718293a4b5c6d7e8f9/..",
        "{0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9}",
    ],
)
async def test_an_entry_id_that_is_a_path_writes_nothing_outside_the_folder(
    tmp_path: Path, entry_id: str
) -> None:
    folder = tmp_path / "root" / "book"
    folder.mkdir(parents=True)
    before = files_under(tmp_path)
    entry_id = entry_id.replace("<tmp>", str(tmp_path))  # an absolute path, inside the test
    stored = await make(folder).create(SAMPLE.replace(entry_id=entry_id))
    (new,) = files_under(tmp_path) - before
    assert new.parent == folder and HEX32_CARD.fullmatch(new.name)
    assert stored.href == new.name and stored.entry_id == new.name.removesuffix(".vcf")
    assert (await make(folder).get(stored.href)).same_content(
        SAMPLE.replace(entry_id=stored.entry_id)
    )


async def test_a_lower_case_hex_entry_id_names_the_file_upper_cased(tmp_path: Path) -> None:
    stored = await make(tmp_path).create(SAMPLE.replace(entry_id=SAMPLE.entry_id.lower()))
    assert stored.href == f"{SAMPLE.entry_id}.vcf" and stored.entry_id == SAMPLE.entry_id


# --- durable writes that keep the file's mode and owner ---------------------------------------


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("original", [0o644, 0o640, 0o664])
async def test_an_update_keeps_the_files_mode(tmp_path: Path, original: int) -> None:
    connector = make(tmp_path)
    stored = await connector.create(SAMPLE)
    (tmp_path / stored.href).chmod(original)
    await connector.update(stored.href, stored.replace(surname="New"), stored.etag)
    assert mode(tmp_path / stored.href) == original


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another owner")
async def test_an_update_keeps_the_files_owner(tmp_path: Path) -> None:
    connector = make(tmp_path)
    stored = await connector.create(SAMPLE)
    os.chown(tmp_path / stored.href, 65534, 65534)
    await connector.update(stored.href, stored.replace(surname="New"), stored.etag)
    info = (tmp_path / stored.href).stat()
    assert (info.st_uid, info.st_gid) == (65534, 65534)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
async def test_a_new_card_gets_the_mode_of_any_new_file(
    tmp_path: Path, mask: int, expected: int
) -> None:
    with umask(mask):
        stored = await make(tmp_path).create(SAMPLE)
    assert mode(tmp_path / stored.href) == expected


def fail(*args: Any, **kwargs: Any) -> Any:
    raise OSError(5, "Input/output error")


@pytest.mark.parametrize("step", ["fsync", "replace", "fchmod"])
async def test_a_failing_update_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    connector = make(tmp_path)
    stored = await connector.create(SAMPLE)
    before = (tmp_path / stored.href).read_bytes()
    monkeypatch.setattr(os, step, fail)
    with pytest.raises(Unavailable):
        await connector.update(stored.href, stored.replace(surname="New"), stored.etag)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [stored.href]
    assert (tmp_path / stored.href).read_bytes() == before


@pytest.mark.parametrize("step", ["fsync", "link"])
async def test_a_failing_create_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    monkeypatch.setattr(os, step, fail)
    with pytest.raises(Unavailable):
        await make(tmp_path).create(SAMPLE)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


async def test_writes_reach_the_disk_before_and_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The card's bytes are fsynced before it replaces the old one, and the folder after
    it: the rename (or link, or unlink) lives in the folder, not in the file."""
    connector = make(tmp_path)
    steps: list[str] = []
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        is_folder = stat.S_ISDIR(info.st_mode) and info.st_ino == tmp_path.stat().st_ino
        steps.append("fsync folder" if is_folder else "fsync file")
        real_fsync(fd)

    def record(name: str, real: Callable[..., None]) -> Callable[..., None]:
        def step(*args: Any, **kwargs: Any) -> None:
            steps.append(name)
            real(*args, **kwargs)

        return step

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", record("replace", real_replace))
    monkeypatch.setattr(os, "link", record("link", real_link))
    stored = await connector.create(SAMPLE)
    assert steps == ["fsync file", "link", "fsync folder"]
    steps.clear()
    stored = await connector.update(stored.href, stored.replace(surname="New"), stored.etag)
    assert steps == ["fsync file", "replace", "fsync folder"]
    steps.clear()
    await connector.delete(stored.href, stored.etag)
    assert steps == ["fsync folder"]
