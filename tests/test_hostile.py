"""Hostile requests: every one in tests/hostile/corpus.json is replayed over a raw socket
against a running gateway and must get its status.

Most must change nothing: the upstream folders and the stored documents are compared,
byte for byte, before and after. The ones that add an entry (`creates`) must add exactly
that entry, as one new card with a fresh 32-hex name in the vcard folder, and write
nothing anywhere else. Afterwards the gateway still answers, and replaying the corpus
again does not make it grow.

Case keys besides method, path, status, headers and body: `auth` (alice, admin, wrong,
none), `add_entry` (an <entry> added to the document as just served, PUT with If-Match),
`creates`, `outside` (paths, from the vcard folder, that must not appear), `same_body_as`,
`well_formed`, `xml_chars`, `body_contains`, `header_contains`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.conftest import write_config
from tests.support import free_port, start_gateway

CORPUS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "hostile" / "corpus.json").read_text()
)
PLACEHOLDERS = {
    "{long20000}": "a" * 20000,
    "{long8000}": "A" * 8000,
    "{long5000}": "L" * 5000,
    "{headers300}": "".join(f"X-Header-{i}: v\r\n" for i in range(300)),
}
PASSWORDS = {"alice": "alice-pw", "admin": "admin-pw"}
LOGINS = {"alice": "alice@example.com", "admin": "admin"}
FRESH_CARD = re.compile(r"[0-9A-F]{32}\.vcf")
#: Characters XML 1.0 allows (its Char production).
XML_CHARS = re.compile("^[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$")
DOCUMENT = "/users/sip:alice@example.com/tbook.xml"


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def fill(text: str) -> str:
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    return text


def body_of(case: dict[str, Any]) -> bytes:
    if "body_hex" in case:
        return bytes.fromhex(case["body_hex"])
    if "body_repeat" in case:
        spec = case["body_repeat"]
        return str(spec["prefix"] + spec["unit"] * spec["count"] + spec["suffix"]).encode()
    return fill(str(case.get("body", ""))).encode()


def request_bytes(case: dict[str, Any], port: int) -> bytes:
    if "raw" in case:
        return fill(case["raw"]).encode()
    body = body_of(case)
    headers = {"Host": f"127.0.0.1:{port}", "Connection": "close", **case.get("headers", {})}
    headers = {name: fill(value) for name, value in headers.items()}
    auth = case.get("auth", "alice")
    if auth != "none":
        login = LOGINS.get(auth, "alice@example.com")
        password = PASSWORDS.get(auth, "not-her-password")
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()
        )
    if case["method"] in ("PUT", "POST") or body:
        headers["Content-Length"] = str(1000 if case.get("slow") else len(body))
    head = f"{case['method']} {case['path']} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + (b"<resource-lists" if case.get("slow") else body)


def dechunk(data: bytes) -> bytes:
    body = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        body, data = body + data[:size], data[size + 2 :]
    return body


async def replay(case: dict[str, Any], port: int) -> Response:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes(case, port))
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=30)
        if not line.startswith(b"HTTP/"):
            return Response(0)
        response = Response(int(line.split()[1]))
        while (header := await asyncio.wait_for(reader.readline(), timeout=30)) not in (
            b"\r\n",
            b"",
        ):
            name, _, value = header.decode("latin-1").partition(":")
            response.headers[name.strip().lower()] = value.strip()
        with contextlib.suppress(ConnectionError):
            response.body = await asyncio.wait_for(reader.read(), timeout=30)
        if response.headers.get("transfer-encoding", "").lower() == "chunked":
            response.body = dechunk(response.body)
        return response
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 80
    assert len({case["name"] for case in CORPUS}) == len(CORPUS)


@dataclass
class Hostile:
    process: Any
    port: int
    root: Path  # everything upstream lives below, beside the config and the state
    contacts: Path


def card(name: str, extra: str = "") -> str:
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:{name}\r\nTEL;TYPE=CELL:+1 555 0000\r\n{extra}END:VCARD\r\n"


@pytest.fixture
def hostile_gateway(tmp_path: Path, contacts_dir: Path) -> Iterator[Hostile]:
    def sha(password: str) -> str:
        return base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()

    (tmp_path / "users.htpasswd").write_text(
        "".join(f"{LOGINS[u]}:{{SHA}}{sha(p)}\n" for u, p in PASSWORDS.items())
    )
    # Per-user books, with something one level up that no user may read.
    for folder, name in (
        ("books/alice", "Alice Own"),
        ("books", "Leaked Books"),
        ("teams/example.com", "Team Example"),
        ("teams", "Leaked Teams"),
        ("", "Leaked Root"),
    ):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / f"{name.split()[1].lower()}.vcf").write_text(card(name))
    # Characters XML 1.0 cannot carry, as an upstream tool may write them.
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "odd.vcf").write_text(
        card("Odd\x01Person", "NOTE:bell\x07 escape\x1b form\x0c end\ufffe\r\nORG:Acme\x00Inc\r\n"),
        encoding="utf-8",
    )
    (tmp_path / "odd" / "normal.vcf").write_text(card("Normal Person"))
    port = free_port()
    config = write_config(
        tmp_path,
        f"""
[server]
listen = "127.0.0.1:{port}"
body_timeout = "1s"
[auth]
mode = "basic"
users_file = "users.htpasswd"
allow_insecure_basic = true
max_failures = 100000
max_failures_per_user = 100000
max_failures_per_address = 100000
match = "xui"
admins = ["admin"]
realms = {{ "example.com" = "example" }}
[sources.demo]
type = "vcard-dir"
path = "{contacts_dir}"
[sources.personal]
type = "vcard-dir"
path = "{tmp_path}/books/{{user}}"
[sources.team]
type = "vcard-dir"
path = "{tmp_path}/teams/{{domain}}"
[sources.odd]
type = "vcard-dir"
path = "{tmp_path}/odd"
[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
write_to = "demo"
[documents.personal]
name = "personal.xml"
sources = ["personal"]
[documents.team]
name = "team.xml"
sources = ["team"]
[documents.odd]
name = "odd.xml"
sources = ["odd"]
""",
    )
    process = start_gateway(config, tmp_path / "serve.log")
    yield Hostile(process, port, tmp_path, contacts_dir)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def upstream(root: Path) -> dict[str, bytes]:
    """Every file below `root` but the gateway's own state and log, by relative path."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.parts[len(root.parts)] != "var" and path.name != "serve.log"
    }


async def stored(port: int) -> bytes:
    """The stored resource-lists document the corpus aims its element requests at."""
    path = "/resource-lists/users/sip:alice@example.com/index"
    return (await replay({"method": "GET", "path": path}, port)).body


async def served_with(case: dict[str, Any], port: int) -> dict[str, Any]:
    """`case` with its `add_entry` put into the document as it is served right now."""
    if "add_entry" not in case:
        return case
    current = await replay({"method": "GET", "path": case["path"]}, port)
    text = current.body.decode()
    cut = text.rindex("</list>")
    body = text[:cut] + fill(case["add_entry"]) + text[cut:]
    headers = {"Content-Type": "application/resource-lists+xml", **case.get("headers", {})}
    if etag := current.headers.get("etag"):
        headers["If-Match"] = etag
    return {**case, "body": body, "headers": headers}


async def check(case: dict[str, Any], port: int) -> list[str]:
    """What is wrong with the answer to `case` (nothing: an empty list)."""
    response = await replay(await served_with(case, port), port)
    if response.status != case["status"]:
        return [f"{case['name']}: {response.status}, expected {case['status']}"]
    wrong = []
    text = response.body.decode("utf-8", "replace")
    if case.get("well_formed"):
        try:
            etree.fromstring(response.body, etree.XMLParser(resolve_entities=False))
        except etree.XMLSyntaxError as exc:
            wrong.append(f"{case['name']}: not well-formed ({exc})")
    if case.get("xml_chars"):
        try:
            # surrogatepass: a lone surrogate sent as UTF-8 shows up instead of U+FFFD.
            exact = response.body.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            wrong.append(f"{case['name']}: not UTF-8 ({exc})")
        else:
            if bad := sorted({hex(ord(c)) for c in exact if not XML_CHARS.match(c)}):
                wrong.append(f"{case['name']}: characters XML 1.0 cannot carry: {bad}")
    for needle in case.get("body_contains", []):
        if needle not in text:
            wrong.append(f"{case['name']}: {needle!r} is missing from the body")
    for name, needle in case.get("header_contains", {}).items():
        if needle not in response.headers.get(name.lower(), ""):
            wrong.append(f"{case['name']}: {name} is {response.headers.get(name.lower())!r}")
    if "same_body_as" in case:
        canonical = await replay({**case, "path": case["same_body_as"]}, port)
        if canonical.body != response.body:
            wrong.append(f"{case['name']}: not the body of {case['same_body_as']}")
    return wrong


def outside_targets(case: dict[str, Any], contacts: Path) -> list[Path]:
    return [Path(os.path.normpath(contacts / fill(target))) for target in case.get("outside", [])]


async def check_create(case: dict[str, Any], hostile: Hostile) -> list[str]:
    """Replay a case that adds an entry; what is wrong with its effect upstream."""
    name, root, contacts = case["name"], hostile.root, hostile.contacts
    before = upstream(root)
    targets = [t for t in outside_targets(case, contacts) if not t.exists()]
    wrong = await check(case, hostile.port)
    if wrong:
        return wrong
    # The PUT waits (put_wait) for the change to reach the folder; allow some more.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and upstream(root).keys() <= before.keys():
        await asyncio.sleep(0.1)
    after = upstream(root)
    added = sorted(set(after) - set(before))
    changed = sorted(p for p in before if p in after and after[p] != before[p])
    removed = sorted(set(before) - set(after))
    if changed or removed:
        wrong.append(f"{name}: changed {changed} and removed {removed}")
    folder = str(contacts.relative_to(root))
    cards = [
        p for p in added if str(Path(p).parent) == folder and FRESH_CARD.fullmatch(Path(p).name)
    ]
    if len(cards) != 1 or len(added) != 1:
        wrong.append(f"{name}: wrote {[p[:80] for p in added]}, not one card with a fresh name")
    wrong += [f"{name}: wrote {target} outside the folder" for target in targets if target.exists()]
    document = await replay({"method": "GET", "path": DOCUMENT}, hostile.port)
    entries = etree.fromstring(document.body).iter("{urn:ietf:params:xml:ns:resource-lists}entry")
    ids = [
        prop.get("value", "")
        for entry in entries
        if entry.findtext("{urn:ietf:params:xml:ns:resource-lists}display-name") == case["creates"]
        for prop in entry.iter("{counterpath:properties}prop")
        if prop.get("name") == "entry_id"
    ]
    if len(ids) != 1 or not re.fullmatch(r"[0-9A-F]{32}", ids[0]):
        wrong.append(f"{name}: the document shows entry_ids {[i[:40] for i in ids]}")
    return wrong


async def test_hostile_requests_get_their_status_and_change_only_what_they_should(
    hostile_gateway: Hostile,
) -> None:
    port, root = hostile_gateway.port, hostile_gateway.root
    healthy = {"method": "GET", "path": "/healthz", "status": 200}
    for _ in range(200):
        with contextlib.suppress(OSError):
            if (await replay(healthy, port)).status == 200:
                break
        await asyncio.sleep(0.1)
    # A stored list for alice, so element requests have something to aim at.
    index = {
        "method": "PUT",
        "path": "/resource-lists/users/sip:alice@example.com/index",
        "headers": {"Content-Type": "application/resource-lists+xml"},
        "body": '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="a"/></resource-lists>',
    }
    assert (await replay(index, port)).status == 201
    harmless = [case for case in CORPUS if "creates" not in case]
    creating = [case for case in CORPUS if "creates" in case]
    escapes = {t for case in creating for t in outside_targets(case, hostile_gateway.contacts)}
    existing = {t for t in escapes if t.exists()}
    wrong: list[str] = []
    try:
        files, documents = upstream(root), await stored(port)
        for case in harmless:
            wrong += await check(case, port)
        if upstream(root) != files:
            wrong.append("the corpus changed files upstream")
        if await stored(port) != documents:
            wrong.append("the corpus changed the stored document")
        for case in creating:
            wrong += await check_create(case, hostile_gateway)
    finally:
        for target in escapes - existing:  # e.g. /etc/passwd.vcf from an unfixed gateway
            if target.exists():
                target.unlink()
    assert not wrong, "\n".join(wrong)
    process = hostile_gateway.process
    before = rss_kib(process.pid)
    for _ in range(3):
        for case in harmless:
            await replay(case, port)
    after = rss_kib(process.pid)
    assert (await replay(healthy, port)).status == 200
    assert (await replay({"method": "GET", "path": DOCUMENT}, port)).status == 200
    assert after - before < 20 * 1024, f"grew from {before} KiB to {after} KiB"
    # Nothing a client sent as a credential reaches the log, however it was mangled.
    log = (hostile_gateway.root / "serve.log").read_text(errors="replace")
    for login, password in ((LOGINS[u], p) for u, p in PASSWORDS.items()):
        assert password not in log
        assert base64.b64encode(f"{login}:{password}".encode()).decode() not in log
    assert "Traceback" not in log
