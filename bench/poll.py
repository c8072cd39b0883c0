"""Polling benchmark: 1,000 phones (wrk connections) polling a directory document with
If-None-Match, while a 100k-entry LDAP source syncs in the same gateway, beside nginx
serving the same bytes from a file on the same machine in the same run.

    .venv/bin/python -m bench.poll [--people 100000] [--connections 1000] [--seconds 10]

Needs slapd, ldap-utils, nginx-light and wrk (Debian packages). Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import demo_and_ldap_config, gateway_process, timed_get
from bench.ldap_pull import start_slapd
from tests.support import free_port


def wrk(url: str, etag: str, connections: int, seconds: int) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) of wrk polling `url` with If-None-Match."""
    result = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-H",
            f"If-None-Match: {etag}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)[1])  # type: ignore[index]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", result.stdout).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    if "Non-2xx or 3xx" in result.stdout:
        raise SystemExit("errors in wrk's run:\n" + result.stdout)
    return rps, p99


def start_nginx(folder: Path, body: bytes) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    (folder / "www").mkdir()
    (folder / "www" / "tbook.xml").write_bytes(body)
    # nginx's worker drops root and must be able to read the file.
    for path in (folder, folder / "www", folder / "www" / "tbook.xml"):
        path.chmod(0o755)
    (folder / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    types {{ application/resource-lists+xml xml; }}
    server {{
        listen 127.0.0.1:{port};
        root {folder}/www;
        etag on;
    }}
}}
""")
    process = subprocess.Popen(
        ["nginx", "-c", str(folder / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return process, port


async def fetch(url: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers.get("ETag", ""), await response.read()


async def wait_for(url: str, status: int) -> None:
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                if (await timed_get(session, url))[0] == status:
                    return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        server = start_slapd(folder, args.people)
        try:
            port = free_port()
            base = f"http://127.0.0.1:{port}/users/sip:phone@example.com"
            with gateway_process(
                demo_and_ldap_config(folder, port, server), folder / "gateway.log"
            ):
                asyncio.run(wait_for(f"{base}/tbook.xml", 200))
                status, etag, body = asyncio.run(fetch(f"{base}/tbook.xml"))
                syncing = asyncio.run(fetch(f"{base}/people.xml"))[0] == 503
                rps, p99 = wrk(f"{base}/tbook.xml", etag, args.connections, args.seconds)
                still = asyncio.run(fetch(f"{base}/people.xml"))[0] == 503
                label = (
                    "gateway, LDAP sync running"
                    if syncing and still
                    else "gateway, LDAP sync partly running"
                )
                rows.append((label, rps, p99))
                asyncio.run(wait_for(f"{base}/people.xml", 200))
                time.sleep(10)  # the 100k snapshot is still being written to the store
                rows.append(
                    (
                        "gateway, idle",
                        *wrk(f"{base}/tbook.xml", etag, args.connections, args.seconds),
                    )
                )
            nginx, nginx_port = start_nginx(folder, body)
            try:
                url = f"http://127.0.0.1:{nginx_port}/tbook.xml"
                nginx_etag = asyncio.run(fetch(url))[1]
                rows.append(
                    ("nginx, same bytes", *wrk(url, nginx_etag, args.connections, args.seconds))
                )
            finally:
                nginx.terminate()
                nginx.wait()
        finally:
            server.stop()
    reference = rows[-1][1]
    print(
        f"{args.connections} connections polling with If-None-Match for {args.seconds} s each "
        f"({args.people} LDAP entries):"
    )
    print(f"{'':<34} {'requests/s':>11} {'p99 ms':>8} {'vs nginx':>9}")
    for label, rps, p99 in rows:
        print(f"{label:<34} {rps:>11.0f} {p99:>8.1f} {rps / reference:>9.2f}")


if __name__ == "__main__":
    main()
