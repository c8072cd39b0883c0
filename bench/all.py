"""`make bench`: every issue-15 measure beside its reference, one after the other (they
would disturb each other side by side), gathered into one table with the date and the
machine. Each part is its own module and can be run alone (see its docstring):

- bench.serve: 304 and 200 polls vs nginx and bare aiohttp; element GETs;
- bench.startup: a 100,000-card vcard-dir: first answer (no state, restarted), memory,
  snapshot saving;
- bench.put_latency: another phone's GETs while PUTs land on a 100k-contact document;
- bench.ldap_pull: a 100,000-entry LDAP pull vs ldapsearch, per client;
- bench.replicas (issue 17): 304 polls through nginx to two replicas on one PostgreSQL vs
  one; PUT latency on PostgreSQL vs SQLite.

    .venv/bin/python -m bench.all [--only serve startup ...] [--markdown table.md]

Prints the table (and writes it as Markdown, for the README); nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, Row
from bench.search import machine

PARTS: dict[str, list[str]] = {
    "serve": ["bench.serve"],
    "startup": ["bench.startup"],
    "put_latency": ["bench.put_latency"],
    "ldap_pull": ["bench.ldap_pull", "--sizes", "100000"],
    "replicas": ["bench.replicas"],
}


def run_part(name: str, folder: Path) -> list[Row]:
    output = folder / f"{name}.json"
    command = [sys.executable, "-m", *PARTS[name], "--json", str(output)]
    print(f"== {' '.join(command[2:])}", flush=True)
    finished = subprocess.run(command, cwd=ROOT, check=False)
    if finished.returncode != 0 or not output.exists():
        failed: Row = {
            "measure": f"{name}: the benchmark failed (exit {finished.returncode})",
            "gateway": "-",
            "reference": "-",
            "ratio": "-",
            "goal": "-",
        }
        return [failed]
    rows: list[Row] = json.loads(output.read_text())
    return rows


def markdown(rows: list[Row], header: str) -> str:
    lines = [
        header,
        "",
        "| measure | gateway | reference (same run) | ratio | goal |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['measure']} | {r['gateway']} | {r['reference']} | {r['ratio']} | {r['goal']} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.only:
            rows += run_part(name, Path(folder))
    header = f"{datetime.date.today().isoformat()}, {machine()}"
    table = markdown(rows, header)
    print("\n" + table)
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
