"""Helpers shared by the benchmarks: timing, percentiles, a running gateway process."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypedDict

import aiohttp

from tests.ldap.server import PEOPLE, READER_DN, SERVICE_PASSWORD, Slapd

ROOT = Path(__file__).resolve().parent.parent


class Row(TypedDict):
    """One line of `make bench`'s table: a figure of ours beside its reference."""

    measure: str
    gateway: str
    reference: str
    ratio: str
    goal: str


def write_rows(path: Path | None, rows: list[Row]) -> None:
    """The rows for `make bench` (bench.all) to gather, when asked for (--json)."""
    if path is not None:
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1))


def best_of(runs: int, work: Callable[[], object]) -> float:
    """The fastest of `runs` timings: the least disturbed by other load on the machine."""
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


@contextmanager
def gateway_process(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(config),
                "--log-level",
                "WARNING",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            yield process
        finally:
            process.terminate()
            process.wait(timeout=120)


async def timed_get(session: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    started = time.perf_counter()
    async with session.get(url) as response:
        await response.read()
        return response.status, time.perf_counter() - started


def demo_and_ldap_config(folder: Path, port: int, server: Slapd, page_size: int = 500) -> Path:
    """A gateway serving the 28 demo cards as tbook.xml and the LDAP directory as
    people.xml, listening at once (the LDAP pull goes on in the background)."""
    (folder / "contacts").mkdir(exist_ok=True)
    for card in (ROOT / "config" / "contacts").glob("*.vcf"):
        shutil.copy(card, folder / "contacts")
    config = folder / "gateway.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
startup_sync_wait = "0s"
# wrk's 1,000 connections are 1,000 phones, but all from 127.0.0.1.
max_connections = 2000
max_connections_per_address = 2000
[sources.demo]
type = "vcard-dir"
path = "contacts"
[sources.people]
type = "ldap"
url = "{server.url}"
bind_dn = "{READER_DN}"
password = "{SERVICE_PASSWORD}"
base_dn = "{PEOPLE}"
page_size = {page_size}
interval = "1d"
read_only = true
[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
[documents.people]
name = "people.xml"
sources = ["people"]
""")
    return config
