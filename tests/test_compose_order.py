"""Compositions of a big document finishing out of order (they run in worker threads): the
cached one is the newest, and so is the one whose search index is built ahead."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import compose, directory, keys
from gateway.app import create_app
from gateway.model import UserRef
from tests.conftest import ConfigFactory

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
DOCUMENT = "/users/sip:alice@example.com/tbook.xml"
ELEMENT = DOCUMENT + "/~~/resource-lists/list/entry[1]/display-name"
LOOKUP = "/phonebook/lookup/users/sip:alice@example.com/tbook"
NEWCOMER = "+49 30 55501234"


class Gate:
    """Holds the next call of a worker-thread function until opened (at most one)."""

    def __init__(self) -> None:
        self.armed = False
        self.reached = threading.Event()
        self.opened = threading.Event()

    def wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def held(*args: Any, **kwargs: Any) -> Any:
            if self.armed:
                self.armed = False
                self.reached.set()
                assert self.opened.wait(60), "gate never opened"
            return real(*args, **kwargs)

        return held


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(6000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never met")


async def test_a_late_older_composition_leaves_the_newest_its_index(
    aiohttp_client: ClientFactory,
    make_config: ConfigFactory,
    contacts_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The demo book counts as big: polls are answered while it is composed, and its
    # index is built ahead.
    monkeypatch.setattr(compose, "PREBUILT_INDEX", 1)
    monkeypatch.setattr(compose, "ANSWERED_WHILE_COMPOSED", 1)
    building, composing = Gate(), Gate()
    monkeypatch.setattr(directory.Directory, "_build", building.wrap(directory.Directory._build))
    monkeypatch.setattr(compose.Composer, "_compose", composing.wrap(compose.Composer._compose))
    finished: list[int] = []  # compositions done, all steps included
    real_composed = compose.Composer._composed

    async def counted(self: compose.Composer, *args: Any) -> Any:
        try:
            return await real_composed(self, *args)
        finally:
            finished.append(1)

    monkeypatch.setattr(compose.Composer, "_composed", counted)
    client = await aiohttp_client(create_app(make_config()))
    engine = client.app[keys.ENGINE]
    composer = engine.composer
    state = engine.sources.state("demo", UserRef(""))

    def idle() -> bool:
        return not composer._composing and not composer.index_builds.running

    assert (await client.get(DOCUMENT)).status == 200
    await until(idle)
    # 1. A newcomer; the next composition (b) is cached and its index build held.
    (contacts_dir / "newcomer.vcf").write_text(
        f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:newcomer\r\nFN:Xaver Neu\r\n"
        f"TEL;TYPE=WORK:{NEWCOMER}\r\nEND:VCARD\r\n"
    )
    await state.refresh()
    building.armed = True
    assert (await client.get(DOCUMENT)).status == 200  # a poll: answered from before
    await asyncio.to_thread(building.reached.wait, 60)
    # 2. A change whose composition (old) is held in its worker thread.
    victims = sorted(p for p in contacts_dir.glob("*.vcf") if p.name != "newcomer.vcf")
    victims[0].unlink()
    await state.refresh()
    composing.armed = True
    assert (await client.get(DOCUMENT)).status == 200
    await asyncio.to_thread(composing.reached.wait, 60)
    # 3. Another change, composed at once (new): cached, its index build queued behind b's.
    victims[1].unlink()
    await state.refresh()
    assert (await client.get(ELEMENT)).status == 200  # needs the current composition
    # 4. The older composition finishes late; then b's index build.
    done = len(finished)
    composing.opened.set()
    await until(lambda: len(finished) == done + 1)
    building.opened.set()
    await until(idle)
    newest = composer._cache[("tbook", "")][1]
    assert newest.directory.indexed  # its own index, not the one before b's
    found = await client.get(LOOKUP, params={"number": NEWCOMER})
    assert found.status == 200, await found.text()
    assert (await found.json())["name"] == "Xaver Neu"
