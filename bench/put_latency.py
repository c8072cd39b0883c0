"""PUT latency benchmark (issue 15): a second phone's GETs while a first phone's PUTs land on
a document backed by 100,000 contacts, beside the same GETs with no PUTs.

The gateway serves two documents: `people.xml`, composed from a vcard-dir folder of N
generated cards (capped at 1,000 entries, written back to the same folder), and
`tbook.xml`, the 28 demo cards. The writer phone (its own process, so its XML editing does
not disturb the reader's clock) GETs people.xml, then repeatedly edits one entry's comment
in the document it holds and PUTs the whole document back with If-Match, taking the ETag
the PUT answers and polling with If-None-Match as a phone does. The reader phone (another
user and device) asks, in turn over one keep-alive connection: a poll of tbook.xml with a
matching If-None-Match (304), a full GET of tbook.xml, a poll of people.xml with the ETag it
last got (304, or 200 when a PUT changed it), and a full GET of people.xml.

    .venv/bin/python -m bench.put_latency [--people 100000] [--puts 20] [--idle-seconds 20]

Prints p50 / p99 / max of each kind of GET, idle and while the PUTs land; nothing is
asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import aiohttp
from lxml import etree

from bench.common import ROOT, Row, gateway_process, percentiles, write_rows
from bench.search import people, wait_idle, write_cards
from tests.support import free_port

HOST = "127.0.0.1"
WRITER = {"User-Agent": "snomD785/10.1.54.13 (writer)"}
READER = {"User-Agent": "Bria 6 release 6.5.3 (reader)"}
XCAP_TYPE = "application/resource-lists+xml"
CP = "{counterpath:properties}"
RL = "{urn:ietf:params:xml:ns:resource-lists}"
KINDS = ("tbook 304", "tbook 200", "people poll", "people 200")


def config(folder: Path, port: int) -> Path:
    path = folder / "gateway.toml"
    path.write_text(f"""
[server]
listen = "{HOST}:{port}"
state_dir = "{folder}/var"
startup_sync_wait = "0s"
[sources.people]
type = "vcard-dir"
path = "{folder}/cards"
interval = "1h"
[sources.demo]
type = "vcard-dir"
path = "{folder}/contacts"
[documents.people]
name = "people.xml"
sources = ["people"]
write_to = "people"
[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
""")
    return path


@dataclass(frozen=True)
class Sample:
    kind: str
    status: int
    seconds: float


def edited(body: bytes, round_: int) -> bytes:
    """`body` with one entry's comment changed (a different entry each round)."""
    root = etree.fromstring(body)
    entries = root.findall(f"{RL}list/{RL}entry")
    entry = entries[(round_ * 37) % len(entries)]
    for prop in entry.findall(f"{CP}prop"):
        if prop.get("name") == "comment":
            entry.remove(prop)
    etree.SubElement(entry, f"{CP}prop", name="comment", value=f"edited in round {round_}")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(
        root, encoding="UTF-8", pretty_print=True
    )


async def write(url: str, puts: int, started: EventType, done: EventType) -> list[Sample]:
    """The writer phone: `puts` PUTs, each of the document it holds with one edit."""
    samples: list[Sample] = []
    async with aiohttp.ClientSession(headers=WRITER) as session:
        async with session.get(url) as response:
            body, etag = await response.read(), response.headers["ETag"]
        started.set()
        for round_ in range(puts):
            sent = edited(body, round_)
            headers = {"If-Match": etag, "Content-Type": XCAP_TYPE}
            began = time.perf_counter()
            async with session.put(url, data=sent, headers=headers) as response:
                await response.read()
                samples.append(Sample("PUT", response.status, time.perf_counter() - began))
                if response.status != 200:
                    raise SystemExit(f"PUT answered {response.status}: {await response.text()}")
                body, etag = sent, response.headers["ETag"]
            # The phone's next poll: a 304 when the merge gave back exactly what it sent.
            async with session.get(url, headers={"If-None-Match": etag}) as response:
                if response.status == 200:
                    body, etag = await response.read(), response.headers["ETag"]
    done.set()
    return samples


def writer_process(
    url: str, puts: int, started: EventType, done: EventType, out: multiprocessing.Queue[object]
) -> None:
    out.put(asyncio.run(write(url, puts, started, done)))


async def read(base: str, until: EventType | float) -> list[Sample]:
    """The reader phone, round after round of the four GETs, until the event is set (or
    for that many seconds)."""
    urls = {"tbook": f"{base}/tbook.xml", "people": f"{base}/people.xml"}
    etags: dict[str, str] = {}
    samples: list[Sample] = []
    deadline = time.monotonic() + until if isinstance(until, float) else None
    async with aiohttp.ClientSession(headers=READER) as session:
        for name, url in urls.items():
            async with session.get(url) as response:
                await response.read()
                etags[name] = response.headers["ETag"]
        while not (until.is_set() if deadline is None else time.monotonic() >= deadline):
            for kind in KINDS:
                name, what = kind.split()
                headers = {"If-None-Match": etags[name]} if what != "200" else {}
                began = time.perf_counter()
                async with session.get(urls[name], headers=headers) as response:
                    await response.read()
                seconds = time.perf_counter() - began
                etags[name] = response.headers.get("ETag", etags[name])
                samples.append(Sample(kind, response.status, seconds))
            await asyncio.sleep(0)
    return samples


def run(folder: Path, args: argparse.Namespace) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(idle GETs, GETs while the PUTs land, the PUTs)."""
    port = free_port()
    base = f"http://{HOST}:{port}/users/sip:reader@example.com"
    writer_url = f"http://{HOST}:{port}/users/sip:writer@example.com/people.xml"
    with gateway_process(config(folder, port), folder / "gateway.log") as process:
        started = time.monotonic()
        asyncio.run(wait_ready(f"{base}/people.xml", process.poll))
        print(f"people.xml ready after {time.monotonic() - started:.1f} s", flush=True)
        wait_idle(process.pid)
        idle = asyncio.run(read(base, float(args.idle_seconds)))
        context = multiprocessing.get_context("spawn")
        began, done = context.Event(), context.Event()
        out: multiprocessing.Queue[object] = context.Queue()
        writer = context.Process(
            target=writer_process, args=(writer_url, args.puts, began, done, out)
        )
        writer.start()
        began.wait()
        busy = asyncio.run(read(base, done))
        puts = out.get()
        writer.join()
        assert isinstance(puts, list)
    return idle, busy, puts


async def wait_ready(url: str, exited: object) -> None:
    async with aiohttp.ClientSession() as session:
        while True:
            if callable(exited) and exited() is not None:
                raise SystemExit("the gateway exited; see its log")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)


def table(idle: list[Sample], busy: list[Sample], puts: list[Sample]) -> None:
    print(f"{'':30}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}   statuses")
    for label, samples in (("no PUTs", idle), ("while PUTs land", busy)):
        for kind in KINDS:
            mine = [s for s in samples if s.kind == kind]
            row(f"{kind}, {label}", mine)
    row("the PUTs themselves", puts)


def row(label: str, samples: list[Sample]) -> None:
    seconds = [s.seconds for s in samples]
    p50, p99 = percentiles(seconds)
    statuses: dict[int, int] = {}
    for s in samples:
        statuses[s.status] = statuses.get(s.status, 0) + 1
    shown = ", ".join(f"{n}×{status}" for status, n in sorted(statuses.items()))
    print(f"{label:30}{len(samples):>6}{p50:>9.2f}{p99:>9.2f}{max(seconds) * 1000:>9.2f}   {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--puts", type=int, default=20)
    parser.add_argument("--idle-seconds", type=int, default=20)
    parser.add_argument("--log", type=Path, help="keep the gateway's log here")
    parser.add_argument("--json", type=Path, help="also write the rows here (bench.all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        write_cards(folder / "cards", people(args.people, random.Random(15)))
        (folder / "contacts").mkdir()
        for card in (ROOT / "config" / "contacts").glob("*.vcf"):
            shutil.copy(card, folder / "contacts")
        try:
            idle, busy, puts = run(folder, args)
        finally:
            if args.log is not None:
                shutil.copy(folder / "gateway.log", args.log)
    print(
        f"\n{args.people:,} contacts behind people.xml (1,000 listed), {len(puts)} PUTs, "
        "each editing one entry; the reader's GETs one after the other:"
    )
    table(idle, busy, puts)
    busy_ms = [s.seconds * 1000 for s in busy]
    idle_ms = [s.seconds * 1000 for s in idle]
    rows: list[Row] = [
        {
            "measure": f"another phone's GET while PUTs land ({args.people:,} contacts), max",
            "gateway": f"{max(busy_ms):.0f} ms (p99 {percentiles([s.seconds for s in busy])[1]:.0f} ms)",
            "reference": f"no PUTs: max {max(idle_ms):.0f} ms",
            "ratio": f"{max(busy_ms) / max(idle_ms):.1f}×",
            "goal": "never > 100 ms",
        }
    ]
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
