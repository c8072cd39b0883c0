"""Start-up benchmark (issue 15): a vcard-dir folder of 100,000 cards behind one document.

- first full answer after start: from the process start to the document's first 200,
  with no state (cold: every file read and parsed) and again with the state the first run
  stored (warm: the snapshot answers, the folder is read again in the background);
  reference: reading the same files with `cat` in the same run;
- resident memory of the process once it is idle (the search index built, the snapshot
  stored), beside the size of the cards on disk;
- saving the snapshot: every contact (the first sync) beside one changed contact (the
  next one): the cost grows with the change, not the source.

    .venv/bin/python -m bench.startup [--cards 100000] [--json results.json]

Prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import Row, gateway_process, write_rows
from bench.search import machine, people, wait_idle, write_cards
from gateway.model import Contact
from gateway.store_sqlite import SqliteStore as Store
from tests.support import free_port

CACHE = Path(tempfile.gettempdir()) / "xcap-gateway-bench-cards"


def cards_folder(count: int) -> Path:
    """The generated cards, kept between runs (writing 100,000 files takes a while)."""
    folder = CACHE / str(count)
    done = folder / ".complete"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)  # a run stopped half way
        folder.parent.mkdir(parents=True, exist_ok=True)
        write_cards(folder, people(count, random.Random(15)))
        done.touch()
    return folder


def config(root: Path, cards: Path, port: int) -> Path:
    path = root / "gateway.toml"
    path.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
state_dir = "{root / "state"}"
startup_sync_wait = "0s"
[sources.people]
type = "vcard-dir"
path = "{cards}"
[documents.people]
name = "people.xml"
sources = ["people"]
default_region = "DE"
""")
    return path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def first_answer(url: str, process: subprocess.Popen[bytes], started: float) -> float:
    """Seconds from `started` to the document's first 200."""
    async with aiohttp.ClientSession() as session:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited with {process.returncode}")
            if time.perf_counter() - started > 900:
                raise RuntimeError(f"no answer from {url} after 900 s")
            try:
                async with session.get(url) as response:
                    await response.read()
                    if response.status == 200:
                        return time.perf_counter() - started
                    if response.status != 503:  # not ready yet; anything else is wrong
                        raise RuntimeError(f"{url} answered {response.status}")
            except aiohttp.ClientConnectionError:
                pass  # not listening yet
            await asyncio.sleep(0.05)


def start_once(root: Path, cards: Path) -> tuple[float, float]:
    """(seconds to the first full answer, MB resident once idle) of one start."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/users/sip:a@example.com/people.xml"
    path = config(root, cards, port)
    started = time.perf_counter()
    with gateway_process(path, root / "serve.log") as process:
        seconds = asyncio.run(first_answer(url, process, started))
        wait_idle(process.pid, seconds=2.0)
        return seconds, rss_mb(process.pid)


def cat_seconds(cards: Path) -> float:
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    subprocess.run(
        f"find {cards} -name '*.vcf' -exec cat {{}} + > /dev/null", shell=True, check=True
    )
    return time.perf_counter() - started


def save_seconds(root: Path, count: int) -> tuple[float, float]:
    """(saving `count` contacts as a first sync does, saving one changed contact)."""
    store = Store(root / "save" / "state.sqlite3")
    contacts = {
        f"c{i}.vcf": Contact(
            uid=f"u{i}",
            source="people",
            href=f"c{i}.vcf",
            etag=f"{i:032x}",
            display_name=f"Person {i}",
            business=(f"+49 30 {i:07d}",),
            categories=("work",),
        )
        for i in range(count)
    }
    started = time.perf_counter()
    store.save("people", "", "fp", None, 1.0, replace_all=contacts)
    whole = time.perf_counter() - started
    changed = contacts["c7.vcf"].replace(display_name="Renamed", etag="f" * 32)
    started = time.perf_counter()
    store.save("people", "", "fp", None, 2.0, upserts=[changed])
    one = time.perf_counter() - started
    store.close()
    return whole, one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=100_000)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    cards = cards_folder(args.cards)
    disk_mb = sum(p.stat().st_size for p in cards.glob("*.vcf")) / 1e6
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cat = cat_seconds(cards)
        cold, cold_rss = start_once(root, cards)
        warm, warm_rss = start_once(root, cards)
        whole, one = save_seconds(root, args.cards)
    rows: list[Row] = [
        {
            "measure": f"vcard-dir of {args.cards:,} cards: first full answer, no state",
            "gateway": f"{cold:.1f} s",
            "reference": f"cat of the files {cat:.1f} s",
            "ratio": f"{cold / cat:.1f}×",
            "goal": "≤ 8 s",
        },
        {
            "measure": "the same, restarted with its stored snapshot",
            "gateway": f"{warm:.1f} s",
            "reference": f"cat {cat:.1f} s",
            "ratio": f"{warm / cat:.1f}×",
            "goal": "≤ 8 s",
        },
        {
            "measure": "resident memory once idle (cold start / restarted)",
            "gateway": f"{cold_rss:.0f} / {warm_rss:.0f} MB",
            "reference": f"the cards on disk {disk_mb:.0f} MB",
            "ratio": f"{cold_rss / disk_mb:.1f}×",
            "goal": "≤ 250 MB",
        },
        {
            "measure": f"saving the snapshot: one changed contact of {args.cards:,}",
            "gateway": f"{one * 1000:.1f} ms",
            "reference": f"all of them {whole:.1f} s",
            "ratio": f"{one / whole:.4f}×",
            "goal": "grows with the change",
        },
    ]
    print(f"\n{machine()}")
    for row in rows:
        print(
            f"  {row['measure']:<62} {row['gateway']:>14}  {row['reference']:<26} {row['ratio']:>8}"
        )
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
