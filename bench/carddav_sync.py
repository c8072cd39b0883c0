"""CardDAV benchmark: the gateway's sync of a Radicale address book (full, then with one
card changed) beside the time of Radicale's own sync-collection REPORT for the same book,
in the same run.

    .venv/bin/python -m bench.carddav_sync [--sizes 1000 10000] [--runs 3]

The reference is the server's cost alone; the gateway's sync adds the multiget of every
(changed) card and parsing it. Prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import aiohttp

from connectors import webdav
from connectors.carddav import CardDavConnector
from connectors.carddav_settings import CardDavSettings
from tests.dav.servers import DavServer, start_radicale, vcard

BOOK = "/alice/contacts/"
T = TypeVar("T")


def seed(server: DavServer, size: int) -> None:
    cards = "".join(
        vcard(
            f"card-{i:06d}",
            f"Person {i:06d}",
            f"N:{i:06d};Person;;;",
            f"TEL;TYPE=WORK:+49 30 {i:07d}",
            f"EMAIL:person{i}@example.com",
            "CATEGORIES:work",
        )
        for i in range(size)
    )
    # One PUT of concatenated cards to a new collection path makes the whole book at once.
    status, body, _ = server.request(
        "PUT", BOOK, cards.encode(), "alice", {"Content-Type": "text/vcard"}
    )
    assert status in (201, 204), (status, body[:200])


async def reference_report(server: DavServer, token: str) -> str:
    async with (
        aiohttp.ClientSession(
            headers={"Authorization": aiohttp.encode_basic_auth("alice", "alice-pw")}
        ) as session,
        session.request(
            "REPORT",
            server.origin + BOOK,
            data=webdav.sync_collection(token),
            headers={"Depth": "1", "Content-Type": "application/xml"},
        ) as response,
    ):
        body = await response.read()
    return webdav.parse_multistatus(body, server.origin + BOOK).sync_token


async def timed(work: Awaitable[T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = await work
    return time.perf_counter() - started, result


async def measure(server: DavServer, size: int, runs: int) -> tuple[float, float, float, float]:
    settings = CardDavSettings.model_validate(
        {"url": server.origin + BOOK, "username": "alice", "password": "alice-pw"}
    )
    connector = CardDavConnector("book", settings)
    try:
        ref_full = ours_full = ref_one = ours_one = float("inf")
        for run in range(runs):
            elapsed, ref_token = await timed(reference_report(server, ""))
            ref_full = min(ref_full, elapsed)
            elapsed, full = await timed(connector.changes(None))
            ours_full = min(ours_full, elapsed)
            assert len(full.changed) == size
            server.put_card(
                f"{BOOK}card-{run:06d}.vcf", vcard(f"card-{run:06d}", f"Changed {run}"), "alice"
            )
            elapsed, _ = await timed(reference_report(server, ref_token))
            ref_one = min(ref_one, elapsed)
            elapsed, delta = await timed(connector.changes(full.token))
            ours_one = min(ours_one, elapsed)
            assert len(delta.changed) == 1, len(delta.changed)
        return ref_full, ours_full, ref_one, ours_one
    finally:
        await connector.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{'cards':>6} {'sync':>12} {'Radicale REPORT':>16} {'gateway':>9} {'ratio':>6}")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as temp:
            server = start_radicale(Path(temp), {"alice": "alice-pw"})
            try:
                seed(server, size)
                ref_full, ours_full, ref_one, ours_one = asyncio.run(
                    measure(server, size, args.runs)
                )
            finally:
                server.stop()
        for label, ref, ours in (("full", ref_full, ours_full), ("one change", ref_one, ours_one)):
            print(
                f"{size:>6} {label:>12} {ref * 1000:>13.0f} ms {ours * 1000:>6.0f} ms {ours / ref:>6.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
