"""Simulated phones for the soak: digest credentials (RFC 7616, MD5, nonce reused with a
growing nc), a User-Agent each, polls with If-None-Match, and edits (add, change, delete)
from the version just fetched or the one before, with or without If-Match."""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
from dataclasses import dataclass, field

import aiohttp
from multidict import CIMultiDict

from bench.soak_servers import DOMAIN, REALM, password
from gateway.entry import Entry
from gateway.xcap import counterpath

_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]+))')
#: Names of the entries phones may change or delete: the seeded cards and their own.
EDITABLE = ("Card ", "Soak ")


@dataclass
class Held:
    """A version the phone holds: its ETag, body and when it was fetched."""

    etag: str
    body: bytes
    fetched: float


@dataclass
class Phone:
    index: int
    user: str
    agent: str
    document: str
    book: bool
    current: Held | None = None
    previous: Held | None = None
    nonce: str = ""
    opaque: str = ""
    nc: int = 0

    @property
    def path(self) -> str:
        return f"/users/sip:{self.user}@{DOMAIN}/{self.document}"


@dataclass
class Sample:
    at: float
    kind: str  # "poll" or "put"
    status: int  # 0: no answer (connection refused or reset, timeout)
    seconds: float
    text: str = ""


@dataclass
class Edit:
    """A PUT answered 200: what it asked of the upstream."""

    user: str
    phone: int
    op: str  # add, change, delete
    entry_id: str
    before: str  # the name the entry had in the base ("" for add)
    after: str  # the name it asked for ("" for delete)
    base_fetched: float
    answered: float
    if_match: bool
    stale: bool


@dataclass
class Record:
    samples: list[Sample] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    #: PUTs that got no answer or a 5xx: they may or may not have been committed.
    unanswered: list[Edit] = field(default_factory=list)
    put_statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


def _authorization(phone: Phone, method: str, uri: str) -> str:
    phone.nc += 1
    nc = f"{phone.nc:08x}"
    cnonce = os.urandom(8).hex()
    ha1 = hashlib.md5(f"{phone.user}:{REALM}:{password(phone.user)}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{phone.nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    opaque = f', opaque="{phone.opaque}"' if phone.opaque else ""
    return (
        f'Digest username="{phone.user}", realm="{REALM}", nonce="{phone.nonce}", '
        f'uri="{uri}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}", '
        f'response="{response}"{opaque}'
    )


def _challenge(response: aiohttp.ClientResponse, phone: Phone) -> bool:
    for value in response.headers.getall("WWW-Authenticate", []):
        if not value.startswith("Digest ") or "algorithm=MD5" not in value.replace('"', ""):
            continue
        params = {m[1]: m[2] or m[3] for m in _PARAM.finditer(value)}
        phone.nonce, phone.opaque, phone.nc = params.get("nonce", ""), params.get("opaque", ""), 0
        return bool(phone.nonce)
    return False


async def request(
    session: aiohttp.ClientSession,
    origin: str,
    phone: Phone,
    method: str,
    headers: dict[str, str],
    body: bytes | None = None,
) -> tuple[int, bytes, CIMultiDict[str], float]:
    """One request with digest, answering a challenge (or a stale nonce) at most twice.
    (status, body, headers, seconds of the last attempt); status 0 when nothing answered."""
    uri = phone.path
    seconds = 0.0
    for _ in range(3):
        sent = {**headers, "User-Agent": phone.agent}
        if phone.nonce:
            sent["Authorization"] = _authorization(phone, method, uri)
        started = time.monotonic()
        try:
            async with session.request(method, origin + uri, headers=sent, data=body) as answer:
                content = await answer.read()
                seconds = time.monotonic() - started
                if answer.status == 401 and _challenge(answer, phone):
                    continue
                return answer.status, content, CIMultiDict(answer.headers), seconds
        except (TimeoutError, aiohttp.ClientError) as exc:
            return 0, type(exc).__name__.encode(), CIMultiDict(), time.monotonic() - started
    return 401, b"", CIMultiDict(), seconds


async def poll(session: aiohttp.ClientSession, origin: str, phone: Phone, record: Record) -> None:
    headers = {"If-None-Match": phone.current.etag} if phone.current else {}
    status, body, answer, seconds = await request(session, origin, phone, "GET", headers)
    record.samples.append(Sample(time.monotonic(), "poll", status, seconds, _text(status, body)))
    if status == 200:
        held = Held(answer.get("ETag", ""), body if phone.book else b"", time.monotonic())
        if phone.current is not None and phone.current.etag != held.etag:
            phone.previous = phone.current
        phone.current = held


def _text(status: int, body: bytes) -> str:
    return body[:120].decode(errors="replace").strip() if status >= 500 or status == 0 else ""


async def edit(
    session: aiohttp.ClientSession,
    origin: str,
    phone: Phone,
    record: Record,
    rng: random.Random,
    serial: int,
) -> None:
    """One PUT: an add, a change of a card's name, or a delete, from the version just
    fetched or (a third of the time) the one held before; If-Match 70 % of the time."""
    stale = phone.previous is not None and rng.random() < 1 / 3
    base = phone.previous if stale else phone.current
    if base is None or not base.body:
        return
    entries = counterpath.parse(base.body)
    candidates = [e for e in entries if e.display_name.startswith(EDITABLE)]
    op = rng.choice(["add", "change", "delete"]) if candidates else "add"
    token = f"Soak {phone.user} {phone.index} {serial}"
    if op == "add":
        entry_id = os.urandom(16).hex().upper()
        fields: dict[str, tuple[str, ...]] = {"business_number": (f"+1 555 9{serial:06d}",)}
        body_entries = [*entries, Entry(entry_id, token, fields)]
        before, after = "", token
    else:
        target = rng.choice(candidates)
        entry_id, before = target.entry_id, target.display_name
        if op == "change":
            changed = Entry(target.entry_id, token, target.fields)
            body_entries = [changed if e is target else e for e in entries]
            after = token
        else:
            body_entries = [e for e in entries if e is not target]
            after = ""
    if_match = rng.random() < 0.7
    headers = {"Content-Type": "application/resource-lists+xml"}
    if if_match:
        headers["If-Match"] = base.etag
    sent = counterpath.render(body_entries)
    status, body, answer, seconds = await request(session, origin, phone, "PUT", headers, sent)
    now = time.monotonic()
    if status == 200:
        # What the phone holds now is its own body (the PUT's ETag names it); it never sends
        # a body older than its own last PUT again, as a real phone would not.
        phone.current, phone.previous = Held(answer.get("ETag", ""), sent, now), None
    record.samples.append(Sample(now, "put", status, seconds, _text(status, body)))
    record.put_statuses[status] = record.put_statuses.get(status, 0) + 1
    if status == 200 or status == 0 or status >= 500:
        (record.edits if status == 200 else record.unanswered).append(
            Edit(
                phone.user,
                phone.index,
                op,
                entry_id,
                before,
                after,
                base.fetched,
                now,
                if_match,
                stale,
            )
        )
