"""Snapshots: a failed sync keeps the last good data; a change upstream shows at the next sync."""

from __future__ import annotations

from pathlib import Path

from gateway.engine import Engine
from gateway.model import UserRef
from tests.conftest import ConfigFactory

ALICE = UserRef("alice@example.com")


async def test_a_failed_sync_keeps_serving_the_last_good_snapshot(
    make_config: ConfigFactory, contacts_dir: Path
) -> None:
    engine = Engine(make_config())
    await engine.start()
    try:
        good = await engine.document("tbook", ALICE)
        contacts_dir.rename(contacts_dir.with_name("gone"))
        state = engine.sources.state("demo", ALICE)
        assert await state.refresh() is False
        assert state.last_error is not None and "does not exist" in state.last_error
        assert await engine.document("tbook", ALICE) is good
    finally:
        await engine.stop()


async def test_an_edit_on_disk_changes_the_document_at_the_next_sync(
    make_config: ConfigFactory, contacts_dir: Path
) -> None:
    engine = Engine(make_config())
    await engine.start()
    try:
        before = await engine.document("tbook", ALICE)
        assert await engine.document("tbook", ALICE) is before  # cached: nothing changed
        state = engine.sources.state("demo", ALICE)
        assert await state.refresh() is False
        card = contacts_dir / "lars.petersen.vcf"
        card.write_bytes(card.read_bytes().replace(b"Ejer", "Direktør".encode()))
        assert await state.refresh() is True
        after = await engine.document("tbook", ALICE)
        assert after.etag != before.etag
        lars = next(e for e in after.entries.values() if e.display_name == "Lars Petersen")
        assert lars.fields["profession"] == "Direktør"
    finally:
        await engine.stop()


async def test_shared_documents_render_once_for_every_user(make_config: ConfigFactory) -> None:
    engine = Engine(make_config())
    await engine.start()
    try:
        alice = await engine.document("tbook", ALICE)
        bob = await engine.document("tbook", UserRef("bob@example.com"))
        assert bob is alice
    finally:
        await engine.stop()


async def test_per_user_sources_serve_each_user_their_own_book(
    make_config: ConfigFactory, tmp_path: Path, contacts_dir: Path
) -> None:
    personal = tmp_path / "personal"
    (personal / "alice").mkdir(parents=True)
    (contacts_dir / "lars.petersen.vcf").rename(personal / "alice" / "lars.vcf")
    config = make_config(
        extra=f'[sources.mine]\ntype = "vcard-dir"\npath = "{personal}/{{user}}"\n',
        sources='["mine", "demo"]',
        write_to="mine",
    )
    engine = Engine(config)
    await engine.start()
    try:
        alice = await engine.document("tbook", ALICE)
        bob = await engine.document("tbook", UserRef("bob@example.com"))
        assert len(alice.entries) == 28 and len(bob.entries) == 27  # bob has no folder yet
        assert {o.source for o in alice.origins.values()} == {"mine", "demo"}
    finally:
        await engine.stop()
