"""LDAP benchmark: the gateway's full pull, with each client (`client = "ldap3"`, and
"python-ldap" when installed), beside `ldapsearch` pulling the same entries with the same
attributes and page size from the same slapd, in the same run; the cost of an incremental
(content sync) pass that finds no change; and GET latency of a document served from memory
while a 100k-entry pull runs (with `client = "auto"`), beside the same GETs idle.

    .venv/bin/python -m bench.ldap_pull [--sizes 10000 100000] [--runs 3] [--clients ldap3]

Needs slapd and ldap-utils (`make test-servers`). Prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import trustme

from bench.common import (
    Row,
    best_of,
    demo_and_ldap_config,
    gateway_process,
    percentiles,
    timed_get,
    write_rows,
)
from connectors.ldap import LdapConnector
from connectors.ldap_fast import available
from connectors.ldap_settings import LdapSettings
from tests.ldap import server as slapd
from tests.support import free_port

PAGE_SIZE = 500


def start_slapd(folder: Path, people: int) -> slapd.Slapd:
    ca = trustme.CA()
    slapd.write_config(folder, ca)
    slapd.seed(folder, slapd.base_ldif() + "".join(slapd.person_ldif(i) for i in range(people)))
    server = slapd.Slapd(folder, free_port(), free_port(), ca)
    server.start()
    return server


def settings(server: slapd.Slapd, client: str) -> LdapSettings:
    return LdapSettings.model_validate(
        {
            "url": server.url,
            "bind_dn": slapd.READER_DN,
            "password": slapd.SERVICE_PASSWORD,
            "base_dn": slapd.PEOPLE,
            "page_size": PAGE_SIZE,
            "client": client,
        }
    )


def ldapsearch(server: slapd.Slapd, attributes: list[str]) -> None:
    subprocess.run(
        [
            "ldapsearch",
            "-LLL",
            "-x",
            "-H",
            server.url,
            "-D",
            slapd.READER_DN,
            "-w",
            slapd.SERVICE_PASSWORD,
            "-b",
            slapd.PEOPLE,
            "-E",
            f"pr={PAGE_SIZE}/noprompt",
            "(objectClass=inetOrgPerson)",
            *attributes,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def gateway_pull(connector: LdapConnector, expected: int) -> str:
    result = asyncio.run(connector.changes(None))
    assert len(result.changed) == expected, len(result.changed)
    return result.token


def gateway_no_change(connector: LdapConnector, token: str) -> None:
    result = asyncio.run(connector.changes(token))
    assert not result.changed and not result.deleted and result.present is None


async def latency(
    server: slapd.Slapd, folder: Path, requests: int
) -> dict[str, tuple[float, float]]:
    port = free_port()
    config = demo_and_ldap_config(folder, port, server, PAGE_SIZE)
    base = f"http://127.0.0.1:{port}/users/sip:bench@example.com"
    results: dict[str, tuple[float, float]] = {}
    with gateway_process(config, folder / "gateway.log") as process:
        async with aiohttp.ClientSession() as session:
            while True:
                if process.poll() is not None:
                    raise SystemExit((folder / "gateway.log").read_text())
                try:
                    if (await timed_get(session, f"{base}/tbook.xml"))[0] == 200:
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            busy: list[float] = []
            while (await timed_get(session, f"{base}/people.xml"))[0] == 503 and len(
                busy
            ) < 100_000:
                busy.append((await timed_get(session, f"{base}/tbook.xml"))[1])
            idle = [
                (await timed_get(session, f"{base}/tbook.xml"))[1]
                for _ in range(max(requests, len(busy)))
            ]
    results["during the pull"] = percentiles(busy)
    results["idle"] = percentiles(idle)
    results["requests during the pull"] = (float(len(busy)), 0.0)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-requests", type=int, default=2000)
    installed = ["ldap3", "python-ldap"] if available() else ["ldap3"]
    parser.add_argument("--clients", nargs="+", choices=["ldap3", "python-ldap"], default=installed)
    parser.add_argument("--json", type=Path, help="also write the rows here (bench.all)")
    args = parser.parse_args()
    rows: list[Row] = []
    slapd.ensure_installed()
    if "python-ldap" not in args.clients:
        print("python-ldap is not installed (make .venv/bin/.ldap-c): ldap3 only\n")
    print(
        f"{'entries':>8} {'client':>12} {'ldapsearch s':>13} {'gateway s':>10} {'ratio':>6} "
        f"{'no-change sync ms':>18}"
    )
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as temp:
            pulls = measure(
                Path(temp),
                size,
                args.runs,
                args.clients,
                args.latency_requests if size == max(args.sizes) else 0,
            )
        if size == max(args.sizes):
            rows.extend(
                {
                    "measure": f"LDAP full pull of {size:,} entries, {client}",
                    "gateway": f"{ours:.1f} s",
                    "reference": f"ldapsearch, same paging {reference:.2f} s",
                    "ratio": f"{ours / reference:.1f}×",
                    "goal": "≤ 10×",
                }
                for client, (reference, ours) in pulls.items()
            )
    write_rows(args.json, rows)


def measure_client(server: slapd.Slapd, size: int, runs: int, client: str) -> tuple[float, float]:
    """(ldapsearch's seconds, ours) for a full pull of `size` entries."""
    connector = LdapConnector("people", settings(server, client))
    # ldapsearch is timed beside each client: a busy machine slows both alike.
    reference = best_of(runs, lambda: ldapsearch(server, connector.attributes))
    ours = best_of(runs, lambda: gateway_pull(connector, size))
    token = gateway_pull(connector, size)
    unchanged = best_of(runs, lambda: gateway_no_change(connector, token))
    print(
        f"{size:>8} {client:>12} {reference:>13.2f} {ours:>10.2f} "
        f"{ours / reference:>6.1f} {unchanged * 1000:>18.1f}",
        flush=True,
    )
    return reference, ours


def measure(
    folder: Path, size: int, runs: int, clients: list[str], latency_requests: int
) -> dict[str, tuple[float, float]]:
    """Each client's (ldapsearch's seconds, ours) for a full pull of `size` entries."""
    server = start_slapd(folder, size)
    pulls: dict[str, tuple[float, float]] = {}
    try:
        for client in clients:
            pulls[client] = measure_client(server, size, runs, client)
        if latency_requests:
            started = time.perf_counter()
            figures = asyncio.run(latency(server, folder, latency_requests))
            count = int(figures.pop("requests during the pull")[0])
            print(
                f"\nGET of a 28-entry document while the {size}-entry pull runs "
                f"({count} requests, {time.perf_counter() - started:.0f} s in all):"
            )
            for label, (p50, p99) in figures.items():
                print(f"  {label:<16} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
    finally:
        server.stop()
    return pulls


if __name__ == "__main__":
    main()
