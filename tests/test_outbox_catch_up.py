"""Catching up with the outbox other replicas share (Outbox.catch_up): a change this
process commits while the database is being read is not taken for one applied elsewhere."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from gateway import outbox_rows
from gateway.engine import Engine
from gateway.entry import Entry
from gateway.outbox_rows import Item
from tests.conftest import ConfigFactory


async def test_a_change_committed_while_a_catch_up_reads_stays_pending(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    engine = Engine(make_config())
    store = engine.open_store()
    outbox = engine.outbox
    outbox.store = store
    await outbox.pause()  # nothing is applied: only what the outbox holds is looked at
    item = Item(
        "tbook", "alice@example.com", "demo", "", "create", "A" * 32, after=Entry("A" * 32, "New")
    )
    reading, committed = threading.Event(), threading.Event()

    def read_before_the_commit(*args: object) -> list[Item]:
        reading.set()
        committed.wait(10)
        return []  # what a read that began before the commit finds

    monkeypatch.setattr(outbox_rows, "load", read_before_the_commit)
    try:
        catching_up = asyncio.create_task(outbox.catch_up())
        assert await asyncio.to_thread(reading.wait, 10)
        await outbox.commit([item])  # the PUT's commit, while the catch-up reads
        committed.set()
        await catching_up
        assert outbox.pending("demo", "") == [item], "a change just committed was dropped"
        # A later catch-up that does not find it knows it went (applied elsewhere).
        reading.clear()
        await outbox.catch_up()
        assert outbox.pending("demo", "") == []
    finally:
        committed.set()
        store.close()
