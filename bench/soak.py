"""Load, soak and faults (issue 18): N simulated phones poll and edit through a gateway
whose upstreams (slapd, Radicale behind a fault proxy) churn and fail on a schedule, the
gateway itself SIGKILLed and reloaded, its state_dir filled up; at the end the invariants
are checked, a table printed and a JSON result written (--json).

"Compressed": the run lasts --seconds of wall time (3600 by default) and a phone polls
every --poll seconds (60 by default, where a desk phone polls every 15 minutes to hours),
so an hour of the soak carries 15 to 60 hours of a site's polls and edits; the upstream
syncs (--ldap-interval, --book-interval) and churn (every --churn seconds) are compressed
alike. Every fault lasts a share of the run (see SCHEDULE).

Phones: about 10 % of the users have two devices (a desk phone and a softphone, told apart
by User-Agent); the phones of a tenth of the users (--book-share) poll tbook.xml, their
Radicale book before the directory, and follow --edit-rate (10 %) of their polls with a
PUT, so about 1 % of all requests are edits: an add, a rename or a delete, from the version
just fetched or (a third of the time) the one held before, with If-Match 70 % of the time.
The others poll people.xml, the directory alone. One user's edits are sent one at a time,
so their order is the order answered.

    .venv/bin/python -m bench.soak --phones 2000 --seconds 120 --people 20000

Everything listens on 127.0.0.1; every loop ends at the deadline; the run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.soak_phones import Edit, Phone, Record, edit, poll
from bench.soak_servers import (
    FaultProxy,
    Gateway,
    book_names,
    card_name,
    gateway_config,
    login,
    start_books,
    start_slapd,
    write_htdigest,
)
from tests.dav.servers import DavServer, vcard
from tests.ldap import server as ldap_server
from tests.ldap.server import ADMIN_DN, ADMIN_PASSWORD, PEOPLE, Slapd
from tests.support import free_port

#: (fault, start, end) as shares of the run; the rest is calm. Warm-up: the first 15 %.
SCHEDULE: list[tuple[str, float, float]] = [
    ("slapd_down", 0.15, 0.25),
    ("radicale_500", 0.30, 0.40),
    ("radicale_slow", 0.45, 0.53),
    ("gateway_kill", 0.58, 0.66),
    ("sighup", 0.71, 0.77),
    ("disk_full", 0.82, 0.90),
]
WARM_UP = 0.15
CARDS_PER_BOOK = 5


@dataclass
class Options:
    phones: int = 10_000
    people: int = 100_000
    seconds: float = 3600
    poll: float = 60
    book_share: float = 0.1
    two_devices: float = 0.1
    edit_rate: float = 0.1
    concurrency: int = 200
    churn: float = 3
    ldap_interval: str = "10s"
    book_interval: str = "60s"
    tmpfs_mb: int = 256
    log_level: str = "WARNING"
    seed: int = 18
    folder: Path | None = None
    json: Path | None = None


@dataclass
class Window:
    fault: str
    start: float
    end: float = 0.0
    note: str = ""


@dataclass
class Run:
    options: Options
    started: float = 0.0
    windows: list[Window] = field(default_factory=list)
    rss: list[tuple[float, int, int]] = field(default_factory=list)  # (time, pid, KiB)
    churn_cards: dict[str, dict[str, str]] = field(default_factory=dict)  # user: {uid: FN}
    churn_errors: Counter[str] = field(default_factory=Counter)
    ldap_people_added: int = 0
    skipped: list[str] = field(default_factory=list)

    def phase(self, at: float) -> str:
        for window in self.windows:
            if window.start <= at <= (window.end or float("inf")):
                return window.fault
        return "warm-up" if at - self.started < WARM_UP * self.options.seconds else "calm"


def users_and_phones(options: Options, rng: random.Random) -> tuple[list[str], list[Phone]]:
    """About `two_devices` of the users have a desk phone and a softphone; the first
    `book_share` of the users have a Radicale book (tbook.xml), the others poll people.xml."""
    users: list[str] = []
    phones: list[Phone] = []
    index = 0
    while len(phones) < options.phones:
        user = login(len(users))
        users.append(user)
        book = len(users) <= max(1, int(options.book_share * options.phones))
        document = "tbook.xml" if book else "people.xml"
        devices = 2 if rng.random() < options.two_devices else 1
        for device in range(min(devices, options.phones - len(phones))):
            agent = (
                f"snomD785/10.1.54.13 soak-{index}"
                if device == 0
                else f"Bria 6 release 6.5.3 stamp 111 soak-{index}"
            )
            phones.append(Phone(index, user, agent, document, book))
            index += 1
    return users, phones


async def phone_loop(
    phone: Phone,
    session: aiohttp.ClientSession,
    origin: str,
    record: Record,
    options: Options,
    deadline: float,
    gate: asyncio.Semaphore,
    locks: dict[str, asyncio.Lock],
    rng: random.Random,
) -> None:
    await asyncio.sleep(rng.uniform(0, options.poll))
    serial = 0
    while time.monotonic() < deadline:
        async with gate:
            await poll(session, origin, phone, record)
        if phone.book and rng.random() < options.edit_rate:
            # Edits of one user one at a time, so their order is the order answered.
            async with locks[phone.user], gate:
                serial += 1
                await edit(session, origin, phone, record, rng, serial)
        await asyncio.sleep(options.poll * rng.uniform(0.9, 1.1))


def ldap_churn(run: Run, slapd: Slapd, stop: threading.Event, rng: random.Random) -> None:
    """A directory edit every --churn seconds with ldapmodify: a number changed, every fifth
    time a person added (a failure, as while slapd is down, is counted; the loop goes on)."""
    count = 0
    while not stop.wait(run.options.churn):
        count += 1
        if count % 5 == 0:
            ldif = ldap_server.person_ldif(900_000 + count)
            ldif = ldif.replace("\n", "\nchangetype: add\n", 1)
        else:
            index = rng.randrange(run.options.people)
            ldif = (
                f"dn: uid=user{index:06d},{PEOPLE}\nchangetype: modify\n"
                f"replace: telephoneNumber\ntelephoneNumber: +49 30 7{count:06d}\n-\n"
            )
        try:
            result = subprocess.run(
                ["ldapmodify", "-x", "-H", slapd.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
                input=ldif.encode(),
                capture_output=True,
                timeout=10,
            )
        except subprocess.TimeoutExpired:
            run.churn_errors["ldap timeout"] += 1
            continue
        if result.returncode != 0:
            run.churn_errors[f"ldap exit {result.returncode}"] += 1
        elif count % 5 == 0:
            run.ldap_people_added += 1


async def book_churn(
    run: Run,
    books: DavServer,
    session: aiohttp.ClientSession,
    book_users: list[str],
    deadline: float,
    rng: random.Random,
) -> None:
    """A CardDAV edit every --churn seconds, straight to Radicale: a card added (60 %),
    changed or deleted; only cards named "Churn …", which phones never edit."""
    basic = "Basic " + base64.b64encode(b"svc:svc-pw").decode()
    vcard_headers = {"Content-Type": "text/vcard", "Authorization": basic}
    count = 0
    while time.monotonic() < deadline:
        await asyncio.sleep(run.options.churn)
        count += 1
        user = rng.choice(book_users)
        cards = run.churn_cards.setdefault(user, {})
        roll = rng.random()
        try:
            if roll < 0.6 or not cards:
                uid = f"churn-{count}"
                name = f"Churn {user} {count}"
                url = f"{books.origin}/{user}/contacts/{uid}.vcf"
                text = vcard(uid, name, f"TEL;TYPE=cell:+1 666 {count:06d}")
                async with session.put(url, data=text, headers=vcard_headers) as answer:
                    if answer.status in (201, 204):
                        cards[uid] = name
                    else:
                        run.churn_errors[f"carddav {answer.status}"] += 1
            else:
                uid = rng.choice(sorted(cards))
                url = f"{books.origin}/{user}/contacts/{uid}.vcf"
                if roll < 0.85:
                    text = vcard(uid, cards[uid], f"TEL;TYPE=cell:+1 667 {count:06d}")
                    request = session.put(url, data=text, headers=vcard_headers)
                else:
                    request = session.delete(url, headers={"Authorization": basic})
                    del cards[uid]
                async with request as answer:
                    if answer.status >= 300:
                        run.churn_errors[f"carddav {answer.status}"] += 1
        except (TimeoutError, aiohttp.ClientError) as exc:
            run.churn_errors[f"carddav {type(exc).__name__}"] += 1


def fill(path: Path) -> int:
    """Fill the file system of `path` until it is full; bytes written."""
    written = 0
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 512):
            chunk = b"\0" * size
            while True:
                try:
                    written += os.write(descriptor, chunk)
                except OSError:
                    break
    finally:
        os.close(descriptor)
    return written


async def faults(
    run: Run,
    gateway: Gateway,
    slapd: Slapd,
    proxy: FaultProxy,
    state_dir: Path,
    tmpfs: bool,
    session: aiohttp.ClientSession,
) -> None:
    """Each fault of SCHEDULE in its window, undone at its end."""
    total = run.options.seconds
    for fault, start, end in SCHEDULE:
        await asyncio.sleep(max(0.0, run.started + start * total - time.monotonic()))
        finish = run.started + end * total
        window = Window(fault, time.monotonic())
        if fault == "disk_full" and not tmpfs:
            run.skipped.append("disk_full: not root, or tmpfs could not be mounted")
            continue
        run.windows.append(window)
        if fault == "slapd_down":
            await asyncio.to_thread(slapd.stop)
            await asyncio.sleep(max(0.0, finish - time.monotonic()))
            await asyncio.to_thread(slapd.start)
        elif fault in ("radicale_500", "radicale_slow"):
            proxy.mode = "error" if fault == "radicale_500" else "slow"
            await asyncio.sleep(max(0.0, finish - time.monotonic()))
            proxy.mode = "ok"
        elif fault == "gateway_kill":
            kills = 0
            while time.monotonic() < finish - 1 and kills < 3:
                gateway.kill()
                gateway.start()
                kills += 1
                ready = await gateway.ready(session, 120)
                window.note = f"{kills} kills, ready again: {ready}"
                await asyncio.sleep(max(1.0, (finish - time.monotonic()) / 2))
        elif fault == "sighup":
            reloads = 0
            while time.monotonic() < finish and reloads < 20:
                gateway.signal(signal.SIGHUP)
                reloads += 1
                await asyncio.sleep(max(0.5, total * 0.01))
            window.note = f"{reloads} reloads"
        elif fault == "disk_full":
            filler = state_dir / "filler"
            written = await asyncio.to_thread(fill, filler)
            window.note = f"{written >> 20} MiB filler"
            await asyncio.sleep(max(0.0, finish - time.monotonic()))
            filler.unlink()
        window.end = time.monotonic()


async def sample_rss(run: Run, gateway: Gateway, deadline: float) -> None:
    while time.monotonic() < deadline:
        rss = gateway.rss_kib()
        if rss is not None and gateway.process is not None:
            run.rss.append((time.monotonic(), gateway.process.pid, rss))
        await asyncio.sleep(1)


def mount_tmpfs(path: Path, megabytes: int) -> bool:
    if os.geteuid() != 0:
        return False
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
        capture_output=True,
    )
    return result.returncode == 0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def conflicts_logged(log: str) -> set[tuple[str, str]]:
    """(user, entry) of every `event=conflict` line of the gateway's log."""
    found = set()
    for line in log.splitlines():
        if "event=conflict" in line:
            user = re.search(r"user=(\S+)", line)
            entry = re.search(r"entry=(\S+)", line)
            if user and entry:
                found.add((user[1].removeprefix("sip:").split("@")[0], entry[1].upper()))
    return found


def check_edits(
    edits: list[Edit],
    books: DavServer,
    conflicts: set[tuple[str, str]],
    unanswered: list[Edit] | None = None,
) -> tuple[dict[str, int], list[str]]:
    """Replay every 200 PUT per entry, in the order answered, against Radicale's files:
    the last name asked for is there exactly once (or a conflict was logged), an entry
    deleted last is gone (unless edited after the deleting phone's base: kept, as the
    merge must), and no entry left two cards."""
    by_entry: dict[tuple[str, str], list[Edit]] = defaultdict(list)
    for item in edits:
        by_entry[(item.user, item.entry_id.upper())].append(item)
    #: PUTs that got no answer (the gateway killed, a 5xx): they may have been committed.
    maybe = {(e.user, e.entry_id.upper()) for e in unanswered or []}
    names_of: dict[str, Counter[str]] = {}
    outcome: Counter[str] = Counter()
    problems: list[str] = []
    for (user, entry), history in by_entry.items():
        history.sort(key=lambda e: e.answered)
        names = names_of.setdefault(user, Counter(book_names(books, user)))
        lineage = {name for e in history for name in (e.before, e.after) if name}
        present = sum(names[name] for name in lineage)
        last = history[-1]
        if present > 1:
            problems.append(f"{user} {entry}: {present} cards for one entry ({sorted(lineage)})")
            outcome["duplicated"] += 1
        elif last.op in ("add", "change"):
            if names[last.after] == 1:
                outcome["applied"] += 1
            elif (user, entry) in conflicts:
                outcome["conflict logged"] += 1
            elif (user, entry) in maybe:
                outcome["changed again by a PUT that got no answer"] += 1
            else:
                problems.append(
                    f"{user} {entry}: {last.op} to {last.after!r} answered 200, "
                    f"not upstream ({[(e.op, e.after) for e in history]})"
                )
                outcome["lost"] += 1
        elif present == 0:
            outcome["applied"] += 1
        elif any(last.base_fetched < e.answered < last.answered for e in history[:-1]):
            outcome["delete kept: edited since its base"] += 1
        elif (user, entry) in conflicts:
            outcome["conflict logged"] += 1
        else:
            problems.append(
                f"{user} {entry}: delete answered 200, still upstream "
                f"({[(e.op, e.after, e.stale, e.if_match) for e in history]})"
            )
            outcome["delete not applied"] += 1
    return dict(outcome), problems


def check_unseen(
    run: Run, edits: list[Edit], books: DavServer, book_users: list[str]
) -> tuple[int, list[str]]:
    """Nothing a phone never saw was deleted: every churn card still alive upstream and
    every seeded card no phone deleted or renamed is still in its book."""
    touched = {(e.user, e.before) for e in edits if e.before}
    checked = 0
    problems = []
    for user in book_users:
        names = Counter(book_names(books, user))
        expected = [card_name(user, n) for n in range(CARDS_PER_BOOK)]
        expected = [name for name in expected if (user, name) not in touched]
        expected += list(run.churn_cards.get(user, {}).values())
        for name in expected:
            checked += 1
            if names[name] != 1:
                problems.append(f"{user}: {name!r} found {names[name]} times upstream")
    return checked, problems


def check_statuses(run: Run, record: Record) -> tuple[dict[str, int], list[str]]:
    """5xx outside the documented windows. A 503 is allowed while the store is down
    (disk_full), while the gateway restarts, or when its text says a source has no data
    yet (a first sync not finished within first_sync_wait)."""
    counts: Counter[str] = Counter()
    problems: list[str] = []
    for sample in record.samples:
        if sample.status < 500:
            if sample.status == 0:
                counts[f"no answer during {run.phase(sample.at)}"] += 1
            continue
        phase = run.phase(sample.at)
        first_sync = "no data yet from source" in sample.text
        allowed = sample.status == 503 and (phase in ("disk_full", "gateway_kill") or first_sync)
        key = f"{sample.kind} {sample.status} in {phase}" + ("" if allowed else " (NOT allowed)")
        counts[key] += 1
        if not allowed and counts[key] <= 5:
            problems.append(f"{key}: {sample.text!r}")
    return dict(counts), problems


def rss_drift(run: Run) -> list[dict[str, Any]]:
    """Per gateway process: RSS at the end of its warm-up (the run's first 15 %, or a
    restarted process's first quarter) against its last samples, as medians of 10 %."""
    result = []
    by_pid: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for at, pid, kib in run.rss:
        by_pid[pid].append((at, kib))
    for pid, samples in by_pid.items():
        first = samples[0][0]
        warm = run.started + WARM_UP * run.options.seconds
        warm = max(warm, first + (samples[-1][0] - first) / 4)
        after = [kib for at, kib in samples if at >= warm]
        if len(after) < 10:
            continue
        tenth = max(1, len(after) // 10)
        start, end = statistics.median(after[:tenth]), statistics.median(after[-tenth:])
        result.append(
            {
                "pid": pid,
                "samples": len(after),
                "start_mib": round(start / 1024, 1),
                "end_mib": round(end / 1024, 1),
                "drift_percent": round((end / start - 1) * 100, 1),
            }
        )
    return result


def latency_table(run: Run, record: Record) -> dict[str, dict[str, float]]:
    by_phase: dict[str, list[float]] = defaultdict(list)
    for sample in record.samples:
        if sample.kind == "poll" and sample.status in (200, 304):
            by_phase[run.phase(sample.at)].append(sample.seconds)
    return {
        phase: {
            "polls": len(v),
            "p50_ms": round(percentile(v, 0.5) * 1000, 1),
            "p99_ms": round(percentile(v, 0.99) * 1000, 1),
            "max_ms": round(max(v) * 1000, 1),
        }
        for phase, v in by_phase.items()
    }


async def soak(options: Options, folder: Path) -> dict[str, Any]:
    rng = random.Random(options.seed)
    users, phones = users_and_phones(options, rng)
    book_users = sorted({p.user for p in phones if p.book})
    write_htdigest(folder / "users.htdigest", users)
    print(
        f"seeding slapd with {options.people} people, {len(book_users)} Radicale books",
        file=sys.stderr,
    )
    slapd = await asyncio.to_thread(start_slapd, folder / "slapd", options.people)
    books = await asyncio.to_thread(start_books, folder / "radicale", book_users, CARDS_PER_BOOK)
    proxy = FaultProxy(books.origin)
    proxy.start()
    state_dir = folder / "state"
    state_dir.mkdir()
    tmpfs = mount_tmpfs(state_dir, options.tmpfs_mb)
    port = free_port()
    gateway = Gateway(
        gateway_config(
            folder,
            port,
            state_dir,
            slapd,
            proxy.origin,
            options.ldap_interval,
            options.book_interval,
            options.log_level,
        ),
        folder / "gateway.log",
        port,
    )
    run = Run(options)
    record = Record()
    stop = threading.Event()
    churner: threading.Thread | None = None
    connector = aiohttp.TCPConnector(limit=options.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            gateway.start()
            if not await gateway.ready(session, 600):
                raise RuntimeError(
                    "the gateway did not get ready:\n"
                    + gateway.log.read_text(errors="replace")[-3000:]
                )
            run.started = time.monotonic()
            deadline = run.started + options.seconds
            gate = asyncio.Semaphore(options.concurrency)
            locks = {user: asyncio.Lock() for user in users}
            churner = threading.Thread(target=ldap_churn, args=(run, slapd, stop, rng), daemon=True)
            churner.start()
            origin = f"http://127.0.0.1:{port}"
            tasks = [
                asyncio.create_task(
                    phone_loop(
                        phone,
                        session,
                        origin,
                        record,
                        options,
                        deadline,
                        gate,
                        locks,
                        random.Random(options.seed * 100_003 + i),
                    )
                )
                for i, phone in enumerate(phones)
            ]
            tasks.append(
                asyncio.create_task(book_churn(run, books, session, book_users, deadline, rng))
            )
            tasks.append(asyncio.create_task(sample_rss(run, gateway, deadline)))
            tasks.append(
                asyncio.create_task(faults(run, gateway, slapd, proxy, state_dir, tmpfs, session))
            )
            # Everything ends by the deadline; a phone in a slow request gets 120 s more.
            done, pending = await asyncio.wait(tasks, timeout=options.seconds + 120)
            for task in pending:
                task.cancel()
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            stop.set()
            proxy.mode = "ok"
            # A gateway that stopped serving is a finding; restarted, it drains its outbox.
            serving = await gateway.ready(session, 30)
            if not serving:
                gateway.stop()
                gateway.start()
                await gateway.ready(session, 120)
            # Drained: the outbox depth the gateway reports reaches 0 (bounded).
            drained = False
            for _ in range(600):
                if await gateway.outbox_depth(session) == 0:
                    drained = True
                    break
                await asyncio.sleep(0.5)
            gateway.stop()
    finally:
        stop.set()
        if churner is not None:
            churner.join(30)
        gateway.stop()
        proxy.stop()
        slapd.stop()
        books.stop()
        if tmpfs:
            subprocess.run(["umount", "-l", str(state_dir)], capture_output=True)
    log = gateway.log.read_text(errors="replace")
    conflicts = conflicts_logged(log)
    edit_outcome, edit_problems = check_edits(record.edits, books, conflicts, record.unanswered)
    unseen_checked, unseen_problems = check_unseen(
        run, record.edits + record.unanswered, books, book_users
    )
    statuses, status_problems = check_statuses(run, record)
    drift = rss_drift(run)
    rss_problems = [
        f"pid {d['pid']}: RSS drift {d['drift_percent']} %"
        for d in drift
        if d["drift_percent"] >= 10
    ]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {os.uname().machine}, {os.uname().release}",
        "options": {k: str(v) for k, v in asdict(options).items()},
        "phones": len(phones),
        "users": len(users),
        "book_users": len(book_users),
        "polls": sum(1 for s in record.samples if s.kind == "poll"),
        "puts": dict(sorted(record.put_statuses.items())),
        "edits_200": len(record.edits),
        "puts_unanswered": len(record.unanswered),
        "edit_outcome": edit_outcome,
        "unseen_checked": unseen_checked,
        "statuses_5xx": statuses,
        "windows": [
            asdict(w)
            | {"start": round(w.start - run.started, 1), "end": round(w.end - run.started, 1)}
            for w in run.windows
        ],
        "skipped": run.skipped,
        "churn_errors": dict(run.churn_errors),
        "ldap_people_added": run.ldap_people_added,
        "drained": drained,
        "rss": drift,
        "latency": latency_table(run, record),
        "gateway_errors": [line for line in log.splitlines() if "level=ERROR" in line][:20],
        "edits": [asdict(e) for e in record.edits + record.unanswered],
        "problems": {
            "edits": edit_problems[:50],
            "unseen_deleted": unseen_problems[:50],
            "5xx": status_problems,
            "rss": rss_problems,
            "drain": [] if drained else ["the outbox never drained"],
            "serving": []
            if serving
            else ["the gateway did not answer /readyz within 30 s at the end of the run"],
        },
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"soak {result['date']} — {result['machine']}",
        f"{result['phones']} phones, {result['users']} users ({result['book_users']} with a "
        f"Radicale book), {result['polls']} polls, PUTs {result['puts']}",
        f"PUTs answered 200: {result['edits_200']}; per entry edited, upstream: {result['edit_outcome']}",
        f"cards a phone never saw (or never touched), checked upstream: {result['unseen_checked']}",
        f"5xx / no answer: {result['statuses_5xx']}",
        "faults: "
        + "; ".join(
            f"{w['fault']} {w['start']}-{w['end']} s {w['note']}" for w in result["windows"]
        ),
        f"skipped: {result['skipped'] or 'nothing'}",
        f"RSS: {result['rss']}",
        "",
        f"{'phase':<16}{'polls':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}",
    ]
    for phase, row in result["latency"].items():
        lines.append(
            f"{phase:<16}{row['polls']:>8}{row['p50_ms']:>10}{row['p99_ms']:>10}{row['max_ms']:>10}"
        )
    problems = [p for group in result["problems"].values() for p in group]
    lines.append("")
    lines.append("invariants: " + ("all hold" if not problems else f"{len(problems)} problems"))
    lines.extend(f"  {p}" for p in problems[:40])
    return "\n".join(lines)


def run(options: Options) -> dict[str, Any]:
    """The soak in a fresh folder (kept with --folder, removed otherwise)."""
    if options.folder is not None:
        options.folder.mkdir(parents=True, exist_ok=True)
        return asyncio.run(soak(options, options.folder))
    folder = Path(tempfile.mkdtemp(prefix="xcap-soak-"))
    try:
        return asyncio.run(soak(options, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Options()
    parser.add_argument("--phones", type=int, default=defaults.phones)
    parser.add_argument("--people", type=int, default=defaults.people)
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--poll", type=float, default=defaults.poll)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--churn", type=float, default=defaults.churn)
    parser.add_argument("--book-share", type=float, default=defaults.book_share)
    parser.add_argument("--edit-rate", type=float, default=defaults.edit_rate)
    parser.add_argument("--ldap-interval", default=defaults.ldap_interval)
    parser.add_argument("--book-interval", default=defaults.book_interval)
    parser.add_argument("--tmpfs-mb", type=int, default=defaults.tmpfs_mb)
    parser.add_argument("--log-level", default=defaults.log_level)
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    # SIGTERM (timeout, make interrupted) stops the servers as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    options = Options(
        phones=args.phones,
        people=args.people,
        seconds=args.seconds,
        poll=args.poll,
        concurrency=args.concurrency,
        churn=args.churn,
        book_share=args.book_share,
        edit_rate=args.edit_rate,
        ldap_interval=args.ldap_interval,
        book_interval=args.book_interval,
        tmpfs_mb=args.tmpfs_mb,
        folder=args.folder,
        json=args.json,
    )
    result = run(options)
    print(table(result))
    if options.json is not None:
        options.json.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    problems = [p for group in result["problems"].values() for p in group]
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
