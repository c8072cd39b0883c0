"""Search and caller-ID lookup benchmark: a gateway whose document has 100,000 contacts
behind it (a vcard-dir folder, `max_entries` left at 1,000, so most of the book is
found only by search), asked sequentially over one keep-alive connection, beside nginx
serving a file of the answers' typical size to the same client in the same run; the
index's own timings in this process; and wrk polling a format's cached bytes beside the
XCAP document and nginx serving the same bytes, with and without If-None-Match.

    .venv/bin/python -m bench.search [--people 100000] [--rounds 5] [--connections 10 1000]

Needs nginx-light and wrk (Debian packages; `make bench-search` installs them). Prints
tables; nothing is asserted, but answers that differ from the index's are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import platform
import random
import re
import statistics
import subprocess
import tempfile
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp

from bench.common import gateway_process, percentiles
from bench.poll import start_nginx, wait_for
from connectors.vcard import card_to_contact
from connectors.vcard_lines import Card
from gateway.directory import Directory
from gateway.entry import Entry, contact_to_entry
from gateway.formats import Query
from gateway.formats.yealink import FORMAT as YEALINK
from gateway.listing import ordered
from gateway.numbers import NumberFormat
from tests.support import free_port


def words(text: str) -> list[str]:
    return text.split()


GIVEN = words("""Anna Jürgen Zoë José François Søren Åsa Łukasz Małgorzata Çağla Ömer Björn Chloé
Dmitri Fatima Giulia Hiroshi Inès Jan Katarína Lars Mária Nikolaj Olga Paweł Renée Tomáš
Sébastien Valentina Wojciech Xavier Yusuf Zofia Ahmet André Beatriz Conceição Dagmar Élodie
Frédéric Gökhan Hélène Ignacio Jiří Kateřina Ludwig Mehmet Noémie Øystein Patrícia Raphaël
Thérèse Ulrich Władysław Ева Дмитрий Σοφία 太郎 Peter Thomas Michael Andreas Stefan Martin
Christian Sabine Petra Monika Susanne Claudia Julia Laura Lena Lukas Leon Felix Max Paul
Jonas Sophie Marie Emma Mia Hannah Lea Anja Birgit Heike Ingrid Karin Ute Wolfgang Klaus
Dieter Helmut Manfred Uwe Horst Gerhard Ralf Jörg Günter Hans-Peter Karl-Heinz Anne-Marie
""")
SURNAMES = words("""Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer
Koch Bauer Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann Lange
Hartmann Schmitt Werner Schmitz Krause Meier Lehmann Schmid Schulze Maier Köhler Herrmann
König Walter Mayer Huber Kaiser Fuchs Peters Lang Scholz Möller Weiß Jung Hahn Schubert Vogel
Friedrich Keller Günther Frank Berger Winkler Roth Beck Lorenz Baumann Franke Albrecht Simon
Schuster Ludwig Böhm Winter Kraus Schumacher Krämer Vogt Stein Jäger Otto Sommer Groß Seidel
Heinrich Brandt Haas Schreiber Graf Schulte Dietrich Ziegler Kuhn Kühn Pohl Engel Horn Busch
Bergmann Voigt Sauer Arnold Wolff Pfeiffer García Fernández González Rodríguez López Sánchez
Martínez Pérez Rossi Russo Ferrari Esposito Bianchi Romano Colombo Dubois Lefèvre Moreau
Laurent Girard Nowak Kowalski Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński
Szymański Dvořák Novák Svoboda Černý Procházka Kučera Veselý Horák Yılmaz Kaya Demir Şahin
Çelik Yıldız Yıldırım Öztürk Aydın Özdemir Arslan Doğan Kılıç Aslan Çetin Kara Koç Kurt
Özkan Şimşek Andersson Johansson Karlsson Nilsson Eriksson Larsson Olsson Persson Svensson
Gustafsson Jensen Nielsen Hansen Pedersen Andersen Sørensen Ødegaard Østergaard Åberg
Lindqvist Ivanov Smirnov Kuznetsov Popov Tanaka Suzuki Takahashi Watanabe Papadopoulos Nguyen
Tran Pham Kim Lee Park Chen Wang Zhang Liu Smith Jones Williams Brown Taylor Иванов Петров
Παπαδόπουλος 田中""")
#: Rarer surnames made of syllables: the long tail of a big book.
HEADS = words(
    "Kra Bren Hol Lin Mar Ost Wes Sü Nor Gra Fal Ros Ei Bu Ha Lö Wal Sten Dor Fel Ber Ko Ul Tre "
    "Quer Pla Ja Vin Ze Ru Ni Tö Mo Dre Ga Sli Ap Ev Ig Yor"
)
MIDDLES = ["", "ke", "ten", "ner", "lin", "sel"]
TAILS = words("mann dorf berg feld hagen stein bach hoff rich ow ski ová ez sen son ić")
SECTORS = words("Logistik Software Bau Elektro Consulting Ingenieure Gießerei Pflege Handel")
FORMS = ["GmbH", "AG", "KG", "SE", "GmbH & Co. KG", "e.V.", "S.A.", "Sp. z o.o."]
AREAS = ["30", "40", "89", "69", "221", "211", "711", "351", "511", "911"]
MOBILES = ["151", "160", "170", "171", "172", "176", "179"]
FOREIGN = [("43", "1"), ("41", "44"), ("33", "1"), ("31", "20")]
#: How people write the same German number; `{c}` country code, `{a}` area, `{s}` subscriber.
SPELLINGS = [
    "+{c} {a} {s}",
    "0{a} {s}",
    "0{a}/{s3} {s4}",
    "+{c} (0){a} {s}",
    "00{c} {a} {s}",
    "0{a}-{s}",
]
TERM_KINDS = ("name prefix", "2 words", "digit run", "1 letter")
LOOKUP_KINDS = ("present", "extension", "absent")
HOST = "127.0.0.1"
PATH_USER = "users/sip:phone@example.com"


@dataclass(frozen=True)
class Number:
    kind: str  # vCard TYPE: WORK, CELL or HOME
    country: str  # "" for an internal extension
    area: str
    subscriber: str

    def spelled(self, style: int) -> str:
        if not self.country:
            return self.subscriber
        s = self.subscriber
        text = SPELLINGS[style % len(SPELLINGS)].format(
            c=self.country, a=self.area, s=s, s3=s[:3], s4=s[3:]
        )
        # Only German numbers are written nationally (the document's region is DE).
        return text if self.country == "49" or text.startswith("+") else f"+{text.lstrip('0+')}"


@dataclass(frozen=True)
class Person:
    given: str
    surname: str
    company: str
    numbers: tuple[tuple[Number, int], ...]  # each with the spelling it is stored in


def people(count: int, rng: random.Random) -> list[Person]:
    """`count` people: 40% with surnames Zipf-like over SURNAMES (the commonest 1.5% of
    everyone), the rest from the syllable tail;
    1–3 numbers each in mixed spellings, every telephone number unique."""
    weights = [1 / (rank + 1) ** 0.5 for rank in range(len(SURNAMES))]
    companies = [
        f"{rng.choice(SURNAMES)} {rng.choice(SECTORS)} {rng.choice(FORMS)}" for _ in range(400)
    ]
    serials = rng.sample(range(1_000_000, 9_000_000), 3 * count)  # 9xxxxxx: never used
    found = []
    for i in range(count):
        if rng.random() < 0.6:
            surname = rng.choice(HEADS) + rng.choice(MIDDLES) + rng.choice(TAILS)
        else:
            surname = rng.choices(SURNAMES, weights)[0]
        numbers = []
        for slot in range(rng.choices((1, 2, 3), (45, 35, 20))[0]):
            subscriber = str(serials[3 * i + slot])
            if slot == 0 and rng.random() < 0.2:
                number = Number("WORK", "", "", subscriber[:4])
            elif slot == 0:
                number = Number("WORK", "49", rng.choice(AREAS), subscriber)
            elif slot == 1:
                number = Number("CELL", "49", rng.choice(MOBILES), subscriber)
            else:
                country, area = rng.choice([("49", a) for a in AREAS[:4]] + FOREIGN)
                number = Number("HOME", country, area, subscriber)
            numbers.append((number, rng.randrange(len(SPELLINGS))))
        company = rng.choice(companies) if rng.random() < 0.7 else ""
        found.append(Person(rng.choice(GIVEN), surname, company, tuple(numbers)))
    return found


def card(index: int, person: Person) -> str:
    lines = [
        "BEGIN:VCARD",
        "VERSION:3.0",
        f"UID:bench-search-{index}",
        f"FN:{person.given} {person.surname}",
        f"N:{person.surname};{person.given};;;",
        *([f"ORG:{person.company}"] if person.company else []),
        *(f"TEL;TYPE={n.kind}:{n.spelled(style)}" for n, style in person.numbers),
        "END:VCARD",
    ]
    return "\r\n".join(lines) + "\r\n"


def href(index: int) -> str:
    return f"{index:06d}.vcf"


def write_cards(folder: Path, persons: Sequence[Person]) -> None:
    folder.mkdir()
    for index, person in enumerate(persons):
        (folder / href(index)).write_text(card(index, person), encoding="utf-8")


def unaccented(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def search_terms(persons: Sequence[Person], rng: random.Random, each: int) -> list[tuple[str, str]]:
    """(kind, term): what people type into a phone's search field."""
    terms: list[tuple[str, str]] = []
    for _ in range(each):
        person = rng.choice(persons)
        name = person.surname if rng.random() < 0.7 else person.given
        prefix = name[: rng.choice((3, 4, 5))]
        terms.append(("name prefix", rng.choice((prefix, prefix.lower(), unaccented(prefix)))))
        terms.append(("2 words", f"{person.given} {person.surname[:3]}"))
        number, _ = rng.choice(person.numbers)
        digits = re.sub(r"\D", "", number.spelled(0))
        start = rng.randrange(max(1, len(digits) - 6))
        run = rng.choice(
            (
                digits[start : start + rng.choice((5, 6, 7))],
                f"0{number.area} {number.subscriber[:2]}" if number.country == "49" else digits,
                f"+{number.country} {number.area} {number.subscriber[:3]}",
            )
        )
        terms.append(("digit run", run if number.country else number.subscriber))
    terms += [("1 letter", letter) for letter in "amsköz"]
    return terms


def lookup_numbers(
    persons: Sequence[Person], rng: random.Random, each: int
) -> list[tuple[str, str]]:
    """(kind, number): callers' numbers in another spelling than stored, extensions,
    and numbers nobody has."""
    numbers: list[tuple[str, str]] = []
    while len(numbers) < each:
        number, style = rng.choice(rng.choice(persons).numbers)
        if number.country:
            numbers.append(("present", number.spelled(style + rng.randrange(1, len(SPELLINGS)))))
    while len(numbers) < 2 * each:
        number, _ = rng.choice(rng.choice(persons).numbers)
        if not number.country:
            numbers.append(("extension", number.subscriber))
    for i in range(each):
        subscriber = str(rng.randrange(9_000_000, 10_000_000))  # no serial starts with 9
        absent = Number("WORK", "49", rng.choice(AREAS + MOBILES), subscriber)
        numbers.append(("absent", absent.spelled(i) if i % 4 else f"+1 212 555 {i:04d}"))
    return numbers


# --- the gateway and nginx, over HTTP ------------------------------------------------


def config(folder: Path, port: int) -> Path:
    path = folder / "gateway.toml"
    path.write_text(f"""
[server]
listen = "{HOST}:{port}"
startup_sync_wait = "0s"
# wrk's connections are many phones, but all from 127.0.0.1.
max_connections = 4000
max_connections_per_address = 4000
[sources.people]
type = "vcard-dir"
path = "cards"
[documents.people]
name = "people.xml"
sources = ["people"]
formats = ["counterpath", "yealink"]
default_region = "DE"
""")
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, seconds: float = 1.0, timeout: float = 600.0) -> float:
    """Wait until the process uses under 5% of a CPU for `seconds` (the snapshot of a
    big sync is still being stored after the document answers); the time waited."""
    started = time.monotonic()
    before = cpu_seconds(pid)
    while time.monotonic() - started < timeout:
        time.sleep(seconds)
        now = cpu_seconds(pid)
        if now - before < 0.05 * seconds:
            break
        before = now
    return time.monotonic() - started


@dataclass
class Sample:
    kind: str
    ask: str  # the term or number
    status: int
    seconds: float
    body: bytes
    etag: str


Asks = Sequence[tuple[str, str]]


async def measure(rounds: int, asks: Asks, url: Callable[[str], str], warm: str) -> list[Sample]:
    """Every ask `rounds` times in a shuffled order, sequentially from one session (one
    keep-alive connection), after one warm-up request asking `warm`."""
    order = [ask for r in range(rounds) for ask in random.Random(r).sample(asks, len(asks))]
    # The bytes as they are: a gzipped answer would not be the size nginx sends.
    headers = {"Accept-Encoding": "identity"}
    samples = []
    async with aiohttp.ClientSession(headers=headers) as session:
        for kind, ask in [("warm-up", warm), *order]:
            started = time.perf_counter()
            async with session.get(url(ask)) as response:
                body = await response.read()
            seconds = time.perf_counter() - started
            etag = response.headers.get("ETag", "")
            samples.append(Sample(kind, ask, response.status, seconds, body, etag))
    return samples[1:] if order else samples


def get(url: str) -> Sample:
    return asyncio.run(measure(0, [], lambda _: url, ""))[0]


def wrk(url: str, etag: str | None, connections: int, seconds: int) -> tuple[float, float]:
    """(requests per second, p99 ms) of wrk GETting `url`, with If-None-Match when given."""
    header = ["-H", f"If-None-Match: {etag}"] if etag else []
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", *header, url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx or 3xx" in output:
        raise SystemExit("errors in wrk's run:\n" + output)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])  # type: ignore[index]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
    return rps, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


#: (what, with If-None-Match, connections) -> wrk's (requests/s, p99 ms)
Polls = dict[tuple[str, bool, int], tuple[float, float]]


def poll_all(urls: dict[str, str], etags: dict[str, str], args: argparse.Namespace) -> Polls:
    """wrk on each URL, with If-None-Match and without, at each number of connections
    (the URLs one after the other, so both see the same machine)."""
    return {
        (name, conditional, connections): wrk(
            url, etags[name] if conditional else None, connections, args.seconds
        )
        for connections in args.connections
        for conditional in (True, False)
        for name, url in urls.items()
    }


@dataclass
class GatewayRun:
    ready: float  # seconds from start to the document's first 200
    settled: float  # and then to an idle process
    first_search: Sample  # once idle (a big book's index is built ahead, else here)
    searched: list[Sample]
    looked_up: list[Sample]
    plain: dict[str, Sample]  # "yealink", "xcap": the whole (capped) list
    polls: Polls


def run_gateway(folder: Path, args: argparse.Namespace, terms: Asks, numbers: Asks) -> GatewayRun:
    port = free_port()
    base = f"http://{HOST}:{port}"
    urls = {
        "yealink": f"{base}/phonebook/yealink/{PATH_USER}/people",
        "xcap": f"{base}/{PATH_USER}/people.xml",
    }
    lookup = f"{base}/phonebook/lookup/{PATH_USER}/people"
    started = time.monotonic()
    with gateway_process(config(folder, port), folder / "gateway.log") as process:
        asyncio.run(wait_for(urls["xcap"], 200))
        ready = time.monotonic() - started
        settled = wait_idle(process.pid)
        first = get(f"{urls['yealink']}?q=m%C3%BCller")
        searched = asyncio.run(
            measure(args.rounds, terms, lambda q: f"{urls['yealink']}?q={quote(q, safe='')}", "a")
        )
        looked_up = asyncio.run(
            measure(args.rounds, numbers, lambda n: f"{lookup}?number={quote(n, safe='')}", "0")
        )
        plain = {name: get(url) for name, url in urls.items()}
        polls = poll_all(urls, {name: sample.etag for name, sample in plain.items()}, args)
    return GatewayRun(ready, settled, first, searched, looked_up, plain, polls)


def run_nginx(
    folder: Path, args: argparse.Namespace, run: GatewayRun
) -> tuple[dict[str, list[Sample]], Polls]:
    """nginx serving, to the same client the same way, a file of the typical answer's size
    for each kind of search and lookup and for each group of them ("search", "lookup");
    and the two plain lists' bytes, polled by wrk as the gateway was."""
    sizes = {
        "search": [s for s in run.searched if s.kind in TERM_KINDS[:3]],
        "lookup": run.looked_up,
    }
    sizes |= {kind: [s for s in run.searched if s.kind == kind] for kind in TERM_KINDS}
    sizes |= {kind: [s for s in run.looked_up if s.kind == kind] for kind in LOOKUP_KINDS}
    nginx, port = start_nginx(folder, run.plain["xcap"].body)
    try:
        files = {name: b"x" * typical_size(samples) for name, samples in sizes.items()}
        files |= {name: sample.body for name, sample in run.plain.items()}
        for name, body in files.items():
            (folder / "www" / f"{name}.xml").write_bytes(body)
            (folder / "www" / f"{name}.xml").chmod(0o755)
        served = f"http://{HOST}:{port}"
        asyncio.run(wait_for(f"{served}/search.xml", 200))

        def url(name: str) -> str:
            return f"{served}/{quote(name)}.xml"

        asks = [("nginx", name) for name in sizes for _ in range(args.terms)]
        samples = asyncio.run(measure(args.rounds, asks, url, "search"))
        reference = {name: [s for s in samples if s.ask == name] for name in sizes}
        plain = {name: url(name) for name in run.plain}
        polls = poll_all(plain, {name: get(u).etag for name, u in plain.items()}, args)
    finally:
        nginx.terminate()
        nginx.wait()
    return reference, polls


# --- the index in this process -------------------------------------------------------


def directory(folder: Path, count: int) -> Directory:
    """The document's Directory as the composer makes it from the same cards (the cap
    takes the first cards by file name; both lists are sorted)."""
    entries: list[Entry] = []
    for index in range(count):
        text = (folder / href(index)).read_text(encoding="utf-8")
        entries.append(contact_to_entry(card_to_contact(Card.parse(text), "people", href(index))))
    return Directory(ordered(entries[:1000]), ordered(entries), NumberFormat("as-stored", "DE"))


def clock(work: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    work(*args)
    return time.perf_counter() - started


Timings = dict[str, list[float]]  # label -> seconds


def etag_and_gzip(body: bytes) -> None:
    """What the view does with every search answer besides rendering it."""
    hashlib.sha256(body).hexdigest()
    gzip.compress(body, mtime=0)


def in_process(built: Directory, rounds: int, terms: Asks, numbers: Asks) -> Timings:
    timings: Timings = {"index build (once per composition)": [clock(built.search_index)]}
    index = built.search_index()
    for kind in TERM_KINDS:
        for _ in range(rounds):
            for term in (term for k, term in terms if k == kind):
                timings.setdefault(f"index.search, {kind}", []).append(clock(index.search, term))
                started = time.perf_counter()
                body = YEALINK.render(built, Query(q=term))
                timings.setdefault(f"  search + yealink XML, {kind}", []).append(
                    time.perf_counter() - started
                )
                timings.setdefault(f"  ETag (sha256) + gzip of it, {kind}", []).append(
                    clock(etag_and_gzip, body)
                )
    for kind in LOOKUP_KINDS:
        for _ in range(rounds):
            for number in (number for k, number in numbers if k == kind):
                timings.setdefault(f"index.lookup, {kind}", []).append(clock(index.lookup, number))
    return timings


def mismatches(built: Directory, run: GatewayRun) -> list[str]:
    """Answers over HTTP that differ from what the same cards give in this process."""
    wrong = []
    for sample in {s.ask: s for s in run.searched}.values():
        if sample.body != YEALINK.render(built, Query(q=sample.ask)):
            wrong.append(f"search {sample.ask!r}: {entries_in(sample.body)} entries over HTTP")
    for sample in {s.ask: s for s in run.looked_up}.values():
        match = built.lookup(sample.ask)
        if (sample.status == 200) != (match is not None) or (
            match is not None and json.loads(sample.body)["entry_id"] != match.entry.entry_id
        ):
            wrong.append(f"lookup {sample.ask!r}: {sample.status} over HTTP, {match} here")
    return wrong


# --- the report ----------------------------------------------------------------------


def typical_size(samples: Sequence[Sample]) -> int:
    return int(statistics.median(len(s.body) for s in samples))


def entries_in(body: bytes) -> int:
    return body.count(b"<DirectoryEntry>")


def ms(samples: Sequence[float]) -> tuple[float, float]:
    return percentiles(list(samples))


def machine() -> str:
    cpu = platform.machine()
    with open("/proc/cpuinfo") as info:
        for row in info:
            if row.startswith("model name"):
                cpu = row.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({cpu}), load average {load}, Python {platform.python_version()}"


def print_http(
    run: GatewayRun, reference: dict[str, list[Sample]], args: argparse.Namespace
) -> None:
    print(
        f"\nOver HTTP: sequential GETs from one aiohttp session (keep-alive), each ask "
        f"{args.rounds} times, shuffled; nginx: a file of the same row's median size (ms):"
    )
    print(
        f"  {'':<40} {'p50':>7} {'p99':>7} {'n':>4} {'entries':>7} {'bytes':>7} "
        f"{'nginx p50':>9} {'ratio':>6}"
    )
    groups = (("search", run.searched, 5, TERM_KINDS), ("lookup", run.looked_up, 1, LOOKUP_KINDS))
    for what, samples, goal, kinds in groups:
        rows = [(kind, f"{what}, {kind}", [s for s in samples if s.kind == kind]) for kind in kinds]
        chosen = [s for s in samples if s.kind in kinds[:3]]
        rows.insert(3, (what, f"{what}, those 3 (goal p50 <= {goal} ms)", chosen))
        for name, label, group in rows:
            p50, p99 = ms([s.seconds for s in group])
            floor = ms([s.seconds for s in reference[name]])[0]
            count = statistics.median(entries_in(s.body) for s in group)
            entries = f"{count:>7.0f}" if what == "search" else f"{'-':>7}"
            print(
                f"  {label:<40} {p50:>7.2f} {p99:>7.2f} {len(group):>4} {entries} "
                f"{typical_size(group):>7} {floor:>9.2f} {p50 / floor:>6.1f}"
            )


def print_in_process(timings: Timings) -> None:
    print("\nThe index in this process, over the same cards (ms):")
    print(f"  {'':<44} {'p50':>7} {'p99':>7} {'n':>5}")
    for label, samples in timings.items():
        p50, p99 = ms(samples)
        print(f"  {label:<44} {p50:>7.3f} {p99:>7.3f} {len(samples):>5}")


def print_polls(run: GatewayRun, nginx: Polls, args: argparse.Namespace) -> None:
    print(f"\nwrk, {args.seconds} s each, the plain lists (no q), gateway beside nginx:")
    print(f"  {'':<44} {'requests/s':>10} {'p99 ms':>7} {'vs nginx':>8} {'vs XCAP':>8}")
    for connections in args.connections:
        for conditional in (True, False):
            answer = "If-None-Match, 304" if conditional else "no If-None-Match, 200 with body"
            print(f"  {connections} connections, {answer}:")
            xcap = run.polls["xcap", conditional, connections][0]
            for name, label in (("yealink", "yealink, plain URL"), ("xcap", "XCAP document")):
                rps, p99 = run.polls[name, conditional, connections]
                floor = nginx[name, conditional, connections][0]
                label = f"gateway, {label} ({len(run.plain[name].body)} bytes)"
                print(
                    f"    {label:<42} {rps:>10.0f} {p99:>7.1f} {rps / floor:>8.2f} "
                    f"{rps / xcap:>8.2f}"
                )
            for name in ("yealink", "xcap"):
                rps, p99 = nginx[name, conditional, connections]
                print(f"    {'nginx, the same ' + name + ' bytes':<42} {rps:>10.0f} {p99:>7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="times each term is asked")
    parser.add_argument("--terms", type=int, default=20, help="terms of each kind")
    parser.add_argument(
        "--connections",
        type=int,
        nargs="+",
        default=[10, 1000],
        help="wrk's connections: few show the cost of one request, many the accept storm",
    )
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    rng = random.Random(4825)
    persons = people(args.people, rng)
    terms = search_terms(persons, rng, args.terms)
    numbers = lookup_numbers(persons, rng, args.terms)
    print(f"machine before: {machine()}")
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        write_cards(folder / "cards", persons)
        run = run_gateway(folder, args, terms, numbers)
        reference, nginx_polls = run_nginx(folder, args, run)
        built = directory(folder / "cards", args.people)
    timings = in_process(built, args.rounds, terms, numbers)
    print(
        f"gateway: the document answered 200 after {run.ready:.1f} s, its process was idle "
        f"{run.settled:.1f} s later; the first search then took "
        f"{run.first_search.seconds * 1000:.0f} ms"
    )
    print_http(run, reference, args)
    print_in_process(timings)
    print_polls(run, nginx_polls, args)
    for problem in mismatches(built, run):
        print(f"MISMATCH {problem}")
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
