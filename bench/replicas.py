"""Replicas benchmark (issue 17): what a second replica on the same PostgreSQL brings to
304 polls on this machine, and what PostgreSQL costs a PUT against SQLite.

- 304 throughput: `wrk -t2 -c50` with a matching If-None-Match on a 1,000-entry directory
  document (bench.serve's), through nginx (one worker, keep-alive connections to its
  upstream) in front of one replica, then of two replicas round robin: the proxy hop is in
  both figures. Both replicas run throughout, on one PostgreSQL (the second idles while the
  first is measured alone); rounds alternate (1, 2, 1, 2, ...) and the best of each is
  kept. Nothing is pinned: the replicas, nginx, wrk and PostgreSQL share the machine's
  cores, as they would on one host.
- PUT latency: one phone GETs the demo cards' document, then PUTs it back `--puts` times,
  one after the other, each time with one entry's comment changed (counterpath render and
  parse) and If-Match the ETag of the previous answer; put_wait = 0 (answered once the
  change is durable), write_to the vcard-dir folder (the changes reach the cards: checked
  at the end). The same config once on SQLite (state_dir), once on PostgreSQL; both sync
  each commit to disk (SQLite synchronous=FULL; PostgreSQL fsync and synchronous_commit
  on). The first `--warmup` PUTs of each are not counted.

    .venv/bin/python -m bench.replicas [--seconds 5] [--rounds 4] [--puts 200] [--only 304 put]

Needs PostgreSQL's binaries (the `postgresql` package, as for `make test`), nginx and wrk
(`make bench-tools`). A private PostgreSQL is started in a temp folder and removed at the
end (as root it runs as the `postgres` user: tests.pg.server). Prints the figures and the
warnings and errors the gateways and nginx logged; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.common import ROOT, Row, gateway_process, percentiles, write_rows
from bench.search import cpu_seconds
from bench.serve import write_cards
from gateway.entry import Entry
from gateway.xcap import counterpath
from tests.pg.server import Postgres, launch, working_in
from tests.support import free_port

HOST = "127.0.0.1"
DOCUMENT = "/users/sip:phone@example.com/tbook.xml"
PHONE = {"User-Agent": "snomD785/10.1.54.13"}
#: How long a gateway, nginx or the write-back may take before the run gives up.
START_SECONDS = 60.0
APPLY_SECONDS = 30.0
WRK_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def gateway_config(folder: Path, name: str, port: int, cards: Path, store_url: str) -> Path:
    """One gateway's config: the directory of `cards`, written back to them; SQLite in its
    own state_dir, or the PostgreSQL of `store_url`."""
    store = f'[store]\nurl = "{store_url}"\n' if store_url else ""
    config = folder / f"{name}.toml"
    config.write_text(f"""
[server]
listen = "{HOST}:{port}"
state_dir = "{folder}/{name}-var"
put_wait = 0
# wrk's connections come through nginx, all from 127.0.0.1.
max_connections = 2000
max_connections_per_address = 2000
{store}
[sources.demo]
type = "vcard-dir"
path = "{cards}"
interval = "1h"
[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
write_to = "demo"
""")
    return config


@dataclass
class Gateway:
    name: str
    port: int
    log: Path
    pid: int = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{DOCUMENT}"


@contextmanager
def started(folder: Path, name: str, cards: Path, store_url: str) -> Iterator[Gateway]:
    """A gateway process, once its document answers 200; SIGTERM at the end."""
    port = free_port()
    gateway = Gateway(name, port, folder / f"{name}.log")
    config = gateway_config(folder, name, port, cards, store_url)
    with gateway_process(config, gateway.log) as process:
        gateway.pid = process.pid
        asyncio.run(wait_ok(gateway.url, process.poll, gateway.log))
        yield gateway


async def wait_ok(url: str, exited: Callable[[], int | None], log: Path) -> None:
    """Until `url` answers 200; SystemExit (with the log) if the process exits first or
    START_SECONDS pass."""
    deadline = time.monotonic() + START_SECONDS
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if exited() is not None:
                raise SystemExit(f"{url}: the process exited:\n" + log.read_text(errors="replace"))
            try:
                async with session.get(url) as response:
                    await response.read()
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url}: no 200 after {START_SECONDS:.0f} s:\n" + log.read_text())


async def etag_of(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        await response.read()
        return response.headers.get("ETag", "")


async def statuses(url: str, etag: str, count: int) -> dict[int, int]:
    """How `count` GETs with If-None-Match: `etag` were answered."""
    seen: dict[int, int] = {}
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.get(url, headers={"If-None-Match": etag}) as response:
                await response.read()
                seen[response.status] = seen.get(response.status, 0) + 1
    return seen


# --- 304 throughput: one replica or two behind nginx ----------------------------------------


@contextmanager
def nginx_in_front(folder: Path, name: str, ports: list[int]) -> Iterator[str]:
    """nginx (one worker) proxying to `ports` round robin, over keep-alive connections;
    the document's URL through it."""
    port = free_port()
    servers = "".join(f"server {HOST}:{p};\n" for p in ports)
    conf = folder / f"{name}.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {folder}/{name}.pid;
error_log {folder}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    upstream gateways {{
        {servers}
        keepalive 64;
    }}
    server {{
        listen {HOST}:{port};
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }}
    }}
}}
""")
    log = folder / f"{name}-error.log"
    process = subprocess.Popen(
        ["nginx", "-e", str(log), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://{HOST}:{port}{DOCUMENT}"
        asyncio.run(wait_ok(url, process.poll, log))
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class WrkRun:
    rps: float
    requests: int
    bytes_read: float
    #: Answers of status 400 and above (wrk's "Non-2xx or 3xx responses").
    errors: int
    socket_errors: str
    #: CPU seconds per wall second of each gateway and of PostgreSQL, during the run.
    cpu: dict[str, float] = field(default_factory=dict)


def wrk(url: str, etag: str, seconds: int, cpu_of: Callable[[], dict[str, float]]) -> WrkRun:
    """`wrk -t2 -c50` polling `url` with If-None-Match: `etag`."""
    command = ["wrk", "-t2", "-c50", f"-d{seconds}s", "-H", f"If-None-Match: {etag}", url]
    before, began = cpu_of(), time.monotonic()
    result = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 30
    )
    elapsed = time.monotonic() - began
    after = cpu_of()
    out = result.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB|TB) read", out)
    if rps is None or total is None:
        raise SystemExit("wrk's output is not as expected:\n" + out + result.stderr)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: (.*)", out)
    return WrkRun(
        float(rps[1]),
        int(total[1]),
        float(total[2]) * WRK_UNITS[total[3]],
        int(errors[1]) if errors else 0,
        sockets[1].strip() if sockets else "",
        {name: (after[name] - before.get(name, 0.0)) / elapsed for name in after},
    )


def postgres_cpu(server: Postgres) -> float:
    """CPU seconds of PostgreSQL's processes alive now (the postmaster and its backends)."""
    total = 0.0
    for pid in working_in(server.data):
        with contextlib.suppress(OSError, IndexError, ValueError):  # gone meanwhile
            total += cpu_seconds(pid)
    return total


def machine_cpu() -> dict[str, float]:
    """CPU seconds of the whole machine since boot: busy (every core, every process: the
    others sharing this machine too), and stolen by the hypervisor."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    tick = os.sysconf("SC_CLK_TCK")
    return {"all cores": (user + nice + system + irq + softirq) / tick, "steal": steal / tick}


@dataclass
class ThroughputResult:
    runs: dict[int, list[WrkRun]]
    body_bytes: int
    same_etag: bool
    checks: dict[int, dict[int, int]]
    notes: list[str]


def measure_304(folder: Path, server: Postgres, args: argparse.Namespace) -> ThroughputResult:
    cards = folder / "cards"
    write_cards(cards, args.entries)
    url = server.create_database("bench_replicas_304")
    runs: dict[int, list[WrkRun]] = {1: [], 2: []}
    checks: dict[int, dict[int, int]] = {}
    with ExitStack() as stack:
        first = stack.enter_context(started(folder, "replica-1", cards, url))
        second = stack.enter_context(started(folder, "replica-2", cards, url))
        body = len(asyncio.run(body_of(first.url)))
        etags = [asyncio.run(etag_of(g.url)) for g in (first, second)]
        notes = [f"ETags: replica-1 {etags[0]}, replica-2 {etags[1]}"]

        def cpu_of() -> dict[str, float]:
            return {
                first.name: cpu_seconds(first.pid),
                second.name: cpu_seconds(second.pid),
                "postgres": postgres_cpu(server),
                **machine_cpu(),
            }

        ports = {1: [first.port], 2: [first.port, second.port]}
        for round_ in range(args.rounds):
            for count in (1, 2):
                with nginx_in_front(folder, f"nginx-{count}", ports[count]) as front:
                    checks[count] = asyncio.run(statuses(front, etags[0], 10))
                    run = wrk(front, etags[0], args.seconds, cpu_of)
                runs[count].append(run)
                print(
                    f"round {round_ + 1}, {count} replica(s): {run.rps:,.0f} requests/s, "
                    f"{run.bytes_read / max(run.requests, 1):.0f} bytes/answer, "
                    f"{run.errors} answers ≥ 400, socket errors: {run.socket_errors or 'none'}; "
                    "CPU/s: " + ", ".join(f"{k} {v:.2f}" for k, v in run.cpu.items()),
                    flush=True,
                )
    return ThroughputResult(runs, body, etags[0] == etags[1], checks, notes)


async def body_of(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.read()


# --- PUT latency: SQLite and PostgreSQL -----------------------------------------------------


@dataclass
class PutResult:
    seconds: list[float]
    statuses: dict[int, int]
    applied: int
    expected: int
    apply_wait: float


def comment(round_: int) -> str:
    return f"bench edit {round_:05}."


async def phone_puts(url: str, puts: int) -> tuple[list[float], dict[int, int], dict[str, str]]:
    """The phone's PUTs one after the other: (each round trip in seconds, the statuses,
    entry_id -> the comment it was last given)."""
    seconds: list[float] = []
    seen: dict[int, int] = {}
    last: dict[str, str] = {}
    async with aiohttp.ClientSession(headers=PHONE) as session:
        async with session.get(url) as response:
            etag, entries = response.headers["ETag"], counterpath.parse(await response.read())
        for round_ in range(puts):
            index = round_ % len(entries)
            entry = entries[index]
            changed = Entry(
                entry.entry_id, entry.display_name, {**entry.fields, "comment": comment(round_)}
            )
            sent = [*entries[:index], changed, *entries[index + 1 :]]
            headers = {"If-Match": etag, "Content-Type": counterpath.MIME_TYPE}
            began = time.perf_counter()
            async with session.put(url, data=counterpath.render(sent), headers=headers) as answer:
                await answer.read()
                seconds.append(time.perf_counter() - began)
                seen[answer.status] = seen.get(answer.status, 0) + 1
                if answer.status == 200:
                    etag, entries = answer.headers["ETag"], sent
                    last[entry.entry_id] = comment(round_)
                    continue
            # Not taken (412, 409, 503...): start again from what the gateway serves now.
            async with session.get(url) as response:
                etag, entries = response.headers["ETag"], counterpath.parse(await response.read())
    return seconds, seen, last


def applied(cards: Path, last: dict[str, str]) -> int:
    """How many of the entries' last comments are in the cards' folder."""
    text = "".join(card.read_text(errors="replace") for card in cards.glob("*.vcf"))
    return sum(1 for value in last.values() if value in text)


def measure_puts(folder: Path, name: str, store_url: str, args: argparse.Namespace) -> PutResult:
    cards = folder / f"{name}-cards"
    cards.mkdir()
    for card in (ROOT / "config" / "contacts").glob("*.vcf"):
        shutil.copy(card, cards)
    with started(folder, name, cards, store_url) as gateway:
        seconds, seen, last = asyncio.run(phone_puts(gateway.url, args.warmup + args.puts))
        waited = time.monotonic()
        deadline = waited + APPLY_SECONDS
        while applied(cards, last) < len(last) and time.monotonic() < deadline:
            time.sleep(0.1)
        waited = time.monotonic() - waited
        done = applied(cards, last)
    return PutResult(seconds[args.warmup :], seen, done, len(last), waited)


# --- the report -----------------------------------------------------------------------------


#: PostgreSQL's log lines worth reporting (it logs every start and checkpoint too).
PG_TROUBLE = re.compile(r"\b(WARNING|ERROR|FATAL|PANIC):")


def logged(folder: Path) -> list[str]:
    """What the gateways and nginx logged (gateways at WARNING and above, nginx at warn),
    and PostgreSQL's warnings and errors."""
    lines = []
    for log in sorted(folder.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.strip() and (log.name != "postgres.log" or PG_TROUBLE.search(line)):
                lines.append(f"{log.name}: {line}")
    return lines


def throughput_rows(result: ThroughputResult, args: argparse.Namespace) -> list[Row]:
    one = [run.rps for run in result.runs[1]]
    two = [run.rps for run in result.runs[2]]
    every = [run for runs in result.runs.values() for run in runs]
    odd = [] if result.same_etag else ["the replicas' ETags differ"]
    if errors := sum(run.errors for run in every):
        odd.append(f"{errors} answers ≥ 400")
    if broken := [run.socket_errors for run in every if run.socket_errors]:
        odd.append(f"socket errors: {'; '.join(broken)}")
    # A 304 is about 200 bytes; a 200 is the whole document.
    if full := [run for run in every if run.bytes_read > 1000 * run.requests]:
        odd.append(f"{len(full)} runs had full answers among the 304s")
    return [
        {
            "measure": (
                "304 polls through nginx: two replicas round robin on one PostgreSQL "
                f"({args.entries:,} entries; wrk -t2 -c50, best of {args.rounds} × "
                f"{args.seconds} s; the replicas, nginx, wrk and PostgreSQL share {cores()} "
                "cores: little gain expected)" + (f"; {', '.join(odd)}" if odd else "")
            ),
            "gateway": f"{max(two):,.0f}/s (median {statistics.median(two):,.0f})",
            "reference": (
                f"one replica behind the same nginx: {max(one):,.0f}/s "
                f"(median {statistics.median(one):,.0f})"
            ),
            "ratio": f"{max(two) / max(one):.2f}×",
            "goal": "-",
        }
    ]


def put_rows(sqlite: PutResult, postgres: PutResult) -> list[Row]:
    sqlite_p50, sqlite_p99 = percentiles(sqlite.seconds)
    pg_p50, pg_p99 = percentiles(postgres.seconds)
    odd = []
    for name, result in (("SQLite", sqlite), ("PostgreSQL", postgres)):
        if set(result.statuses) != {200}:
            odd.append(f"{name}: {status_text(result.statuses)}")
        if result.applied < result.expected:
            odd.append(f"{name}: {result.expected - result.applied} edits not in the cards")
    note = f"; {', '.join(odd)}" if odd else ""
    what = f"{len(postgres.seconds)} sequential PUTs, each editing one entry, put_wait = 0"
    return [
        {
            "measure": f"PUT latency on PostgreSQL, p50 ({what}){note}",
            "gateway": f"{pg_p50:.1f} ms",
            "reference": f"SQLite: {sqlite_p50:.1f} ms",
            "ratio": f"{pg_p50 / sqlite_p50:.2f}×",
            "goal": "-",
        },
        {
            "measure": "PUT latency on PostgreSQL, p99",
            "gateway": f"{pg_p99:.1f} ms",
            "reference": f"SQLite: {sqlite_p99:.1f} ms",
            "ratio": f"{pg_p99 / sqlite_p99:.2f}×",
            "goal": "-",
        },
    ]


def status_text(seen: dict[int, int]) -> str:
    return ", ".join(f"{n}×{status}" for status, n in sorted(seen.items()))


def cores() -> int:
    return os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="each wrk run")
    parser.add_argument("--rounds", type=int, default=4, help="wrk runs of each replica count")
    parser.add_argument("--entries", type=int, default=1000, help="the 304 part's document")
    parser.add_argument("--puts", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5, help="PUTs not counted, first")
    parser.add_argument("--only", nargs="+", choices=["304", "put"], default=["304", "put"])
    parser.add_argument("--json", type=Path, help="also write the rows here (bench.all)")
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        folder.chmod(0o755)  # the postgres user (as root) and nginx's worker look inside
        server = launch(folder, fsync=True)
        try:
            if "304" in args.only:
                result = measure_304(folder, server, args)
                print(
                    f"\n304 polls through nginx, {args.entries:,}-entry document "
                    f"({result.body_bytes:,} bytes); best of {args.rounds}:"
                )
                for count in (1, 2):
                    figures = [run.rps for run in result.runs[count]]
                    print(
                        f"  {count} replica(s): {max(figures):>9,.0f} requests/s "
                        f"(median {statistics.median(figures):,.0f})   "
                        f"(check before wrk, statuses through nginx: "
                        f"{status_text(result.checks[count])})"
                    )
                print("  " + "; ".join(result.notes))
                rows += throughput_rows(result, args)
            if "put" in args.only:
                sqlite = measure_puts(folder, "sqlite", "", args)
                postgres = measure_puts(
                    folder, "postgres", server.create_database("bench_replicas_put"), args
                )
                print(f"\n{args.puts} sequential PUTs (after {args.warmup} not counted):")
                for name, result_ in (("SQLite", sqlite), ("PostgreSQL", postgres)):
                    p50, p99 = percentiles(result_.seconds)
                    print(
                        f"  {name:<11} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
                        f"max {max(result_.seconds) * 1000:6.1f} ms   "
                        f"{status_text(result_.statuses)}; {result_.applied}/{result_.expected} "
                        f"last edits in the cards after {result_.apply_wait:.1f} s"
                    )
                rows += put_rows(sqlite, postgres)
        finally:
            server.close()
            lines = logged(folder)
            print(f"\nLogged by the gateways and nginx ({len(lines)} lines):")
            for line in lines[:40]:
                print("  " + line)
            if len(lines) > 40:
                print(f"  ... and {len(lines) - 40} more")
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
