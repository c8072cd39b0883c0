"""Worker processes never outlive the gateway: killed with SIGKILL mid-scan, it leaves no
worker behind (a fork server and its workers used to stay, blocked on a pipe nobody read,
holding their memory, for good)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import write_config

CARDS = 20_000  # enough for the scan to run in worker processes for a while


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def descendants(pid: int) -> set[int]:
    found = children(pid)
    for child in list(found):
        found |= descendants(child)
    return found


def command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_gateway_leaves_no_worker_behind(tmp_path: Path) -> None:
    folder = tmp_path / "cards"
    folder.mkdir()
    for n in range(CARDS):
        (folder / f"c{n:05d}.vcf").write_text(
            f"BEGIN:VCARD\nVERSION:3.0\nUID:u{n}\nFN:Person {n}\nTEL:+49 30 {n:07d}\nEND:VCARD\n"
        )
    config = write_config(
        tmp_path,
        f"""
[server]
listen = "127.0.0.1:0"
state_dir = "var"
[sources.people]
type = "vcard-dir"
path = "{folder}"
[documents.people]
name = "people.xml"
sources = ["people"]
""",
    )
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        workers: set[int] = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and gateway.poll() is None:
            # Whatever multiprocessing started for the scan (the resource tracker aside).
            workers = {
                pid
                for pid in descendants(gateway.pid)
                if b"multiprocessing" in command(pid) and b"resource_tracker" not in command(pid)
            }
            if workers:
                break
            time.sleep(0.02)
        assert workers, "the scan never ran in worker processes"
        left = descendants(gateway.pid)
    finally:
        os.kill(gateway.pid, signal.SIGKILL)
        gateway.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(alive(pid) for pid in left):
        time.sleep(0.05)
    assert not [pid for pid in left if alive(pid)], "processes outlived the gateway"
