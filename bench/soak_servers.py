"""The soak's servers: slapd seeded with slapadd, Radicale with per-user books written on
disk before it starts, a fault proxy in front of Radicale (500s or slow answers), the
gateway process, and the digest users file."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import trustme
from aiohttp import web
from multidict import CIMultiDict

from tests.dav.servers import DavServer, start_radicale, vcard
from tests.ldap import server as ldap_server
from tests.ldap.server import PEOPLE, READER_DN, SERVICE_PASSWORD, Slapd
from tests.support import free_port

REALM = "xcap"
DOMAIN = "example.com"
_NOT_FORWARDED = {"connection", "content-length", "host", "keep-alive", "transfer-encoding"}


def login(index: int) -> str:
    return f"u{index:05d}"


def password(user: str) -> str:
    return f"pw-{user}"


def write_htdigest(path: Path, users: list[str]) -> None:
    """An Apache htdigest file: `user:realm:MD5(user:realm:password)` per user."""
    lines = []
    for user in users:
        ha1 = hashlib.md5(f"{user}:{REALM}:{password(user)}".encode()).hexdigest()
        lines.append(f"{user}:{REALM}:{ha1}\n")
    path.write_text("".join(lines), encoding="utf-8")


def start_slapd(folder: Path, people: int) -> Slapd:
    """A private slapd with `people` inetOrgPersons, seeded offline (slapadd)."""
    ldap_server.ensure_installed()
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ldap_server.write_config(folder, ca)
    with open(folder / "seed.ldif", "w", encoding="utf-8") as ldif:
        ldif.write(ldap_server.base_ldif())
        for index in range(people):
            ldif.write(ldap_server.person_ldif(index))
    subprocess.run(
        [
            str(ldap_server.SLAPADD),
            "-q",
            "-f",
            str(folder / "slapd.conf"),
            "-l",
            str(folder / "seed.ldif"),
        ],
        check=True,
        capture_output=True,
    )
    for attempt in range(3):
        server = Slapd(folder, free_port(), free_port(), ca)
        try:
            server.start()
            return server
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def card_name(user: str, number: int) -> str:
    return f"Card {user} {number}"


def start_books(folder: Path, users: list[str], cards: int) -> DavServer:
    """Radicale with a book per user at /USER/contacts/ holding `cards` cards each, written
    on disk before it starts (seeding thousands through HTTP takes minutes); the service
    account `svc` reads and writes every book."""
    root = folder / "collections" / "collection-root"
    props = json.dumps({"D:displayname": "Contacts", "tag": "VADDRESSBOOK"})
    for user in users:
        book = root / user / "contacts"
        book.mkdir(parents=True, exist_ok=True)
        (book / ".Radicale.props").write_text(props, encoding="utf-8")
        for number in range(cards):
            uid = f"{user}-card-{number}"
            text = vcard(uid, card_name(user, number), f"TEL;TYPE=work:+1 555 {number:04d}")
            (book / f"{uid}.vcf").write_text(text, encoding="utf-8")
    return start_radicale(folder, {"svc": "svc-pw"}, "from_file")


def book_names(server: DavServer, user: str) -> list[str]:
    """The FN of every card in `user`'s book, read from Radicale's files (the upstream's
    truth, after the gateway stopped writing)."""
    names = []
    book = server.folder / "collections" / "collection-root" / user / "contacts"
    for path in sorted(book.glob("*.vcf")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("FN:") or line.startswith("FN;"):
                names.append(line.split(":", 1)[1].strip())
    return names


@dataclass
class FaultProxy:
    """A reverse proxy in front of Radicale, on its own thread and event loop (so the
    phones' load does not delay it): `mode` is "ok", "error" (500 to everything) or "slow"
    (each answer `delay` seconds late)."""

    upstream: str
    mode: str = "ok"
    delay: float = 3.0
    port: int = 0
    requests: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _stop: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("the fault proxy did not start")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(20)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(auto_decompress=False, timeout=timeout) as session:
            self._session = session
            self._ready.set()
            await self._stop.wait()
        await runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        mode = self.mode
        if mode == "error":
            return web.Response(status=500, text="fault injected by the soak\n")
        if mode == "slow":
            await asyncio.sleep(self.delay)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            data=await request.read(),
            headers=headers,
            allow_redirects=False,
        ) as answer:
            body = await answer.read()
            out = CIMultiDict(
                (k, v) for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED
            )
            return web.Response(status=answer.status, body=body, headers=out)


def gateway_config(
    folder: Path,
    port: int,
    state_dir: Path,
    slapd: Slapd,
    books_origin: str,
    ldap_interval: str,
    book_interval: str,
    log_level: str = "WARNING",
) -> Path:
    config = folder / "gateway.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
state_dir = "{state_dir}"
startup_sync_wait = "60s"
first_sync_wait = "5s"
max_connections = 4000
max_connections_per_address = 4000
max_active_users = 20000
[auth]
mode = "digest"
realm = "{REALM}"
users_file = "{folder / "users.htdigest"}"
domains = ["{DOMAIN}"]
[logging]
level = "{log_level}"
[sources.people]
type = "ldap"
url = "{slapd.url}"
bind_dn = "{READER_DN}"
password = "{SERVICE_PASSWORD}"
base_dn = "{PEOPLE}"
interval = "{ldap_interval}"
retry_interval = "2s"
timeout = "5s"
read_only = true
[sources.personal]
type = "carddav"
url = "{books_origin}/{{user}}/contacts/"
username = "svc"
password = "svc-pw"
interval = "{book_interval}"
retry_interval = "2s"
timeout = "10s"
[documents.tbook]
name = "tbook.xml"
sources = ["personal", "people"]
write_to = "personal"
max_entries = 200
require_number = false
[documents.people]
name = "people.xml"
sources = ["people"]
max_entries = 200
""")
    return config


@dataclass
class Gateway:
    config: Path
    log: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)

    def start(self) -> None:
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--config", str(self.config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.pids.append(self.process.pid)

    def signal(self, number: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, number)

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def rss_kib(self) -> int | None:
        if self.process is None:
            return None
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    async def ready(self, session: aiohttp.ClientSession, seconds: float) -> bool:
        """Wait until /readyz answers 200 (bounded); False if it never did or the process
        exited."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                async with session.get(f"http://127.0.0.1:{self.port}/readyz") as response:
                    if response.status == 200:
                        return True
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.2)
        return False

    async def outbox_depth(self, session: aiohttp.ClientSession) -> float | None:
        try:
            async with session.get(f"http://127.0.0.1:{self.port}/metrics") as response:
                text = await response.text()
        except (TimeoutError, aiohttp.ClientError):
            return None
        for line in text.splitlines():
            if line.startswith("xcap_outbox_depth"):
                return float(line.rsplit(" ", 1)[1])
        return None
