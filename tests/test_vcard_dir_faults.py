"""The vcard-dir connector when the folder fails it: a write that fails (a full disk) and a
folder that is briefly not there (a dropped mount) lose no change. Both are retried by
the engine; the retry must find the card as it is on disk and write the change then."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from connectors.vcard_dir import VcardDirConnector, VcardDirSettings
from gateway import keys, outbox
from gateway.app import create_app
from gateway.connector import Unavailable
from gateway.entry import Entry
from gateway.model import UserRef
from gateway.xcap import counterpath
from tests.conftest import DEMO_CONTACTS, ConfigFactory, drained
from tests.connector_contract import SAMPLE, listing
from tests.test_writeback import SNOM, URL, by_name, edit, fetch

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
NEW_ID = "534BB0BC2DDA09E2567C5D8D5B2C0120"


def make(folder: Path, user: UserRef | None = None) -> VcardDirConnector:
    return VcardDirConnector("book", VcardDirSettings(path=folder), user)


# --- F1: a failed write leaves the parsed card as it is on disk ------------------------


def failing_once(monkeypatch: pytest.MonkeyPatch, step: str, error: int) -> None:
    """`os.<step>` fails the next time it is called (as a full disk makes it), then works."""
    real = getattr(os, step)

    def once(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(os, step, real)
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(os, step, once)


@pytest.mark.parametrize("step", ["fsync", "replace"])
async def test_an_update_whose_write_failed_lands_when_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    connector = make(tmp_path)
    stored = await connector.create(SAMPLE)
    before = (tmp_path / stored.href).read_bytes()
    changed = stored.replace(comment="made while the disk was full")
    failing_once(monkeypatch, step, errno.ENOSPC)
    with pytest.raises(Unavailable):
        await connector.update(stored.href, changed, stored.etag)
    assert (tmp_path / stored.href).read_bytes() == before
    # The connector still serves what is on disk, under the same etag: the engine's retry
    # (conditional on that etag) is not taken for a conflict with its own lost edit.
    assert await connector.get(stored.href) == stored
    assert await listing(connector) == {stored.href: stored.etag}
    updated = await connector.update(stored.href, changed, stored.etag)
    assert updated.comment == "made while the disk was full"
    assert "NOTE:made while the disk was full" in (tmp_path / stored.href).read_text()


TWO = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:one\r\nFN:One\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:two\r\nFN:Two\r\nEND:VCARD\r\n"
)


async def test_a_delete_whose_write_failed_lands_when_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "team.vcf").write_bytes(TWO.encode())
    connector = make(tmp_path)
    one = await connector.get("team.vcf#one")
    failing_once(monkeypatch, "replace", errno.EROFS)
    with pytest.raises(Unavailable):
        await connector.delete(one.href, one.etag)
    assert (tmp_path / "team.vcf").read_bytes() == TWO.encode()
    assert await connector.get(one.href) == one
    await connector.delete(one.href, one.etag)
    assert "UID:one" not in (tmp_path / "team.vcf").read_text()


@contextmanager
def small_tmpfs(folder: Path) -> Iterator[None]:
    """`folder` on a tmpfs of its own (256 KiB), so that it can really be filled."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill the folder's disk needs root")
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill(path: Path) -> None:
    """Write `path` until its disk is full."""
    with path.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


async def test_an_edit_made_while_the_disk_was_full_lands_once_there_is_space(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "book"
    with small_tmpfs(folder):
        shutil.copy(DEMO_CONTACTS / "anna.mueller.vcf", folder)
        connector = make(folder)
        anna = await connector.get("anna.mueller.vcf")
        before = (folder / "anna.mueller.vcf").read_bytes()
        changed = anna.replace(comment="made while the disk was full")
        fill(folder / ".filler")
        with pytest.raises(Unavailable):
            await connector.update(anna.href, changed, anna.etag)
        assert (folder / "anna.mueller.vcf").read_bytes() == before
        assert await connector.get(anna.href) == anna
        (folder / ".filler").unlink()
        await connector.update(anna.href, changed, anna.etag)
        assert "NOTE:made while the disk was full" in (folder / "anna.mueller.vcf").read_text()
        assert sorted(p.name for p in folder.iterdir()) == ["anna.mueller.vcf"]


# --- F6: a folder that is not there is Unavailable, never "no card" --------------------


async def test_a_shared_folder_that_is_away_makes_writes_wait_and_creates_nothing(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "book"
    folder.mkdir()
    (folder / "team.vcf").write_bytes(TWO.encode())
    connector = make(folder)
    one = await connector.get("team.vcf#one")
    two = await connector.get("team.vcf#two")
    away = tmp_path / "book.away"
    folder.rename(away)  # the mount drops
    with pytest.raises(Unavailable):
        await listing(connector)
    with pytest.raises(Unavailable):
        await connector.get(one.href)
    with pytest.raises(Unavailable):
        await connector.get_many([one.href])
    with pytest.raises(Unavailable):
        await connector.update(one.href, one.replace(comment="edited"), one.etag)
    with pytest.raises(Unavailable):
        await connector.delete(two.href, two.etag)
    with pytest.raises(Unavailable):
        await connector.create(SAMPLE)
    assert not folder.exists()  # no folder made in the mount's place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.away"]
    away.rename(folder)  # and is back
    await connector.update(one.href, one.replace(comment="edited"), one.etag)
    await connector.delete(two.href, two.etag)
    stored = await connector.create(SAMPLE)
    assert sorted(p.name for p in folder.iterdir()) == [stored.href, "team.vcf"]
    text = (folder / "team.vcf").read_text()
    assert "NOTE:edited" in text and "UID:two" not in text


async def test_a_per_user_folder_that_went_away_makes_changes_wait(tmp_path: Path) -> None:
    folder = tmp_path / "alice"
    connector = make(folder, user=UserRef("alice@example.com"))
    stored = await connector.create(SAMPLE)  # a per-user folder appears with the first card
    folder.rename(tmp_path / "alice.away")
    with pytest.raises(Unavailable):
        await connector.update(stored.href, stored.replace(comment="edited"), stored.etag)
    with pytest.raises(Unavailable):
        await connector.delete(stored.href, stored.etag)
    (tmp_path / "alice.away").rename(folder)
    await connector.update(stored.href, stored.replace(comment="edited"), stored.etag)
    assert "NOTE:edited" in (folder / stored.href).read_text()


async def test_changes_put_while_the_folder_is_away_land_when_it_is_back(
    aiohttp_client: ClientFactory,
    make_config: ConfigFactory,
    contacts_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An edit, a delete and a new entry PUT while the folder is away stay pending (not
    failed, not applied to a folder made in its place), and land once it is back."""
    monkeypatch.setattr(outbox, "RETRY_FIRST", 0.01)
    client = await aiohttp_client(create_app(make_config()))
    engine = client.app[keys.ENGINE]
    served, entries = await fetch(client, SNOM)
    away = contacts_dir.with_name("contacts.away")
    contacts_dir.rename(away)
    sent = [
        *(
            x
            for x in edit(entries, "Anna Müller", comment="made during the outage")
            if x.display_name != "Lars Petersen"
        ),
        Entry(NEW_ID, "Nina", {"home_number": ("+1 555 0300",)}),
    ]
    headers = {**SNOM, "If-Match": served}
    assert (await client.put(URL, data=counterpath.render(sent), headers=headers)).status == 200
    for _ in range(1000):
        queue = engine.outbox.pending("demo", "")
        if engine.outbox.failed or not queue or queue[0].attempts >= 3:
            break
        await asyncio.sleep(0.02)
    assert not engine.outbox.failed, engine.outbox.failed[0].error
    assert engine.outbox.depth == 3
    assert engine.outbox.pending("demo", "")[0].attempts >= 3  # tried, and waiting
    assert not contacts_dir.exists()
    away.rename(contacts_dir)
    await drained(client)
    assert not engine.outbox.failed
    assert "NOTE:made during the outage" in (contacts_dir / "anna.mueller.vcf").read_text()
    assert not (contacts_dir / "lars.petersen.vcf").exists()
    assert "FN:Nina" in (contacts_dir / f"{NEW_ID}.vcf").read_text()
    _, now = await fetch(client, SNOM)
    assert by_name(now)["Anna Müller"].fields["comment"] == "made during the outage"
    assert "Lars Petersen" not in by_name(now) and "Nina" in by_name(now)
