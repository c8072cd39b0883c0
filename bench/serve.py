"""Serving benchmark (issue 15): a 1,000-entry directory of ~900 KB polled by `wrk -t2
-c50`, with a matching If-None-Match (304) and without (200), the server pinned to one
core and wrk to the other; beside nginx (one worker) and a bare aiohttp server answering
the same bytes with the same ETag check, on the same core in the same run; and element
GETs by node selector, sequential over one keep-alive connection.

    .venv/bin/python -m bench.serve [--seconds 8] [--entries 1000]

Needs nginx-light and wrk (`make bench-serve` installs them) and `taskset` (util-linux).
Prints a table of requests/s and ratios; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path

import aiohttp

from bench.common import Row, gateway_process, percentiles, write_rows
from bench.poll import fetch, wait_for
from tests.support import free_port

SERVER_CORE, CLIENT_CORE = "0", "1"
USER_PATH = "/users/sip:phone@example.com"

BARE_AIOHTTP = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    body = open(sys.argv[2], "rb").read()
    etag = '"bare"'
    async def handler(request):
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, headers={"ETag": etag},
                            content_type="application/resource-lists+xml")
    app = web.Application()
    app.router.add_get("/tbook.xml", handler)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


def write_cards(folder: Path, entries: int) -> None:
    """`entries` cards of about 900 bytes each: three numbers, a company, a note."""
    folder.mkdir()
    for i in range(entries):
        (folder / f"c{i:05}.vcf").write_text(
            "BEGIN:VCARD\r\nVERSION:3.0\r\n"
            f"UID:u{i}\r\nFN:Person Number{i} Müller\r\nN:Number{i} Müller;Person;;;\r\n"
            f"ORG:Company {i % 50} GmbH\r\nTITLE:Engineer\r\nEMAIL:p{i}@example.com\r\n"
            f"TEL;TYPE=WORK:+49 30 {1000000 + i}\r\nTEL;TYPE=CELL:+49 171 {2000000 + i}\r\n"
            f"TEL;TYPE=HOME:+49 40 {3000000 + i}\r\nNOTE:{'x' * 200}\r\nCATEGORIES:work\r\n"
            "END:VCARD\r\n",
            encoding="utf-8",
        )


def gateway_config(folder: Path, port: int) -> Path:
    config = folder / "gateway.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [server]
            listen = "127.0.0.1:{port}"
            state_dir = "{folder}/var"
            max_connections = 2000
            max_connections_per_address = 2000
            [sources.demo]
            type = "vcard-dir"
            path = "{folder}/contacts"
            [documents.tbook]
            name = "tbook.xml"
            sources = ["demo"]
            """
        )
    )
    return config


def pinned_wrk(url: str, etag: str | None, seconds: int) -> float:
    """Requests per second of `wrk -t2 -c50` on the client core (If-None-Match: `etag`)."""
    command = ["taskset", "-c", CLIENT_CORE, "wrk", "-t2", "-c50", f"-d{seconds}s"]
    if etag:
        command += ["-H", f"If-None-Match: {etag}"]
    result = subprocess.run([*command, url], capture_output=True, text=True, check=True)
    if "Non-2xx or 3xx" in result.stdout:
        raise SystemExit("errors in wrk's run:\n" + result.stdout)
    line = next(x for x in result.stdout.splitlines() if x.startswith("Requests/sec"))
    return float(line.split()[1])


def pin(pid: int) -> None:
    subprocess.run(["taskset", "-pc", SERVER_CORE, str(pid)], check=True, capture_output=True)


async def element_gets(base: str, rounds: int) -> tuple[float, float]:
    """(p50, p99) ms of element GETs by node selector, spread over the directory."""
    return await sequential_gets(
        f"{base}/~~/resource-lists/list/entry[{1 + (i * 37) % 1000}]/display-name"
        for i in range(rounds)
    )


async def sequential_gets(urls: Iterable[str]) -> tuple[float, float]:
    """(p50, p99) ms of GETs one after the other over one keep-alive connection."""
    samples = []
    async with aiohttp.ClientSession() as session:
        for url in urls:
            started = time.perf_counter()
            async with session.get(url) as response:
                await response.read()
                assert response.status == 200, url
            samples.append(time.perf_counter() - started)
    return percentiles(samples)


def measure_gateway(folder: Path, seconds: int) -> tuple[dict[str, float], bytes]:
    port = free_port()
    base = f"http://127.0.0.1:{port}{USER_PATH}/tbook.xml"
    with gateway_process(gateway_config(folder, port), folder / "gateway.log") as process:
        pin(process.pid)
        asyncio.run(wait_for(base, 200))
        _, etag, body = asyncio.run(fetch(base))
        figures = {
            "304": pinned_wrk(base, etag, seconds),
            "200": pinned_wrk(base, None, seconds),
        }
        figures["element p50"], figures["element p99"] = asyncio.run(element_gets(base, 300))
    return figures, body


def measure_nginx(folder: Path, body: bytes, seconds: int) -> dict[str, float]:
    www = folder / "www"
    www.mkdir()
    (www / "tbook.xml").write_bytes(body)
    # What an element GET answers: one element (the reference for its latency).
    (www / "element.xml").write_bytes(b"<display-name>Person 0001</display-name>")
    for path in (folder, www, www / "tbook.xml", www / "element.xml"):
        path.chmod(0o755)
    port = free_port()
    (folder / "nginx.conf").write_text(
        f"worker_processes 1;\ndaemon off;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/nginx-error.log;\nevents {{ worker_connections 4096; }}\n"
        f"http {{ access_log off; server {{ listen 127.0.0.1:{port}; root {www}; etag on; }} }}\n"
    )
    process = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, "nginx", "-c", str(folder / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/tbook.xml"
        asyncio.run(wait_for(url, 200))
        etag = asyncio.run(fetch(url))[1]
        element = f"http://127.0.0.1:{port}/element.xml"
        return {
            "304": pinned_wrk(url, etag, seconds),
            "200": pinned_wrk(url, None, seconds),
            "element p50": asyncio.run(sequential_gets([element] * 300))[0],
        }
    finally:
        process.terminate()
        process.wait()


def measure_bare(folder: Path, body: bytes, seconds: int) -> dict[str, float]:
    (folder / "bare.py").write_text(BARE_AIOHTTP)
    (folder / "body.xml").write_bytes(body)
    port = free_port()
    process = subprocess.Popen(
        [
            "taskset",
            "-c",
            SERVER_CORE,
            sys.executable,
            str(folder / "bare.py"),
            str(port),
            str(folder / "body.xml"),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = f"http://127.0.0.1:{port}/tbook.xml"
        asyncio.run(wait_for(url, 200))
        return {"304": pinned_wrk(url, '"bare"', seconds), "200": pinned_wrk(url, None, seconds)}
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the rows here (bench.all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        write_cards(folder / "contacts", args.entries)
        gateway, body = measure_gateway(folder, args.seconds)
        nginx = measure_nginx(folder, body, args.seconds)
        bare = measure_bare(folder, body, args.seconds)
    print(f"{args.entries}-entry directory, {len(body):,} bytes; wrk -t2 -c50, {args.seconds} s")
    print(
        f"{'':28}{'gateway':>10}{'bare aiohttp':>14}{'nginx':>10}{'vs nginx':>10}{'bare/nginx':>12}"
    )
    for kind in ("304", "200"):
        print(
            f"{'GET, ' + kind + ' (requests/s)':28}{gateway[kind]:>10,.0f}{bare[kind]:>14,.0f}"
            f"{nginx[kind]:>10,.0f}{gateway[kind] / nginx[kind]:>10.2f}"
            f"{bare[kind] / nginx[kind]:>12.2f}"
        )
    print(
        f"element GET by node selector: p50 {gateway['element p50']:.2f} ms, "
        f"p99 {gateway['element p99']:.2f} ms"
    )
    size = f"{args.entries:,} entries, {len(body) / 1000:,.0f} KB"
    rows: list[Row] = [
        {
            "measure": f"GET with matching If-None-Match (304), {size}",
            "gateway": f"{gateway['304']:,.0f}/s",
            "reference": f"nginx {nginx['304']:,.0f}/s; bare aiohttp {bare['304']:,.0f}/s",
            "ratio": f"{gateway['304'] / nginx['304']:.2f}× (bare {bare['304'] / nginx['304']:.2f}×)",
            "goal": "≥ 0.4×",
        },
        {
            "measure": f"full GET (200), {size}",
            "gateway": f"{gateway['200']:,.0f}/s",
            "reference": f"nginx {nginx['200']:,.0f}/s",
            "ratio": f"{gateway['200'] / nginx['200']:.2f}×",
            "goal": "≥ 0.7×",
        },
        {
            "measure": "element GET by node selector, p50",
            "gateway": f"{gateway['element p50']:.2f} ms",
            "reference": f"nginx, the element's bytes: {nginx['element p50']:.2f} ms",
            "ratio": f"{gateway['element p50'] / nginx['element p50']:.1f}×",
            "goal": "≤ 2 ms",
        },
    ]
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
