"""The listeners under attack, over real sockets against `xcap-gateway serve`: compressed
bodies, slow headers, idle and surplus connections, a low descriptor limit, unparsable
headers that carry credentials, the Server header, /metrics access and state permissions.

Every wait is for an observable condition (a closed socket, a line in the log) with a
generous bound; no test decides by a fixed sleep or a wall-clock time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import resource
import socket
import ssl
import stat
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import trustme

from gateway import connection_guard
from tests.conftest import write_config
from tests.support import free_port, stop_process, wait_listening
from tests.test_tls import write_cert

CREDENTIALS = base64.b64encode(b"alice:alice-pw").decode()
DOCUMENT = "/users/sip:alice@example.com/tbook.xml"


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int
    root: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def gateway(tmp_path: Path, contacts_dir: Path) -> Iterator[GatewayFactory]:
    started: list[Gateway] = []

    def start(server: str = "", auth: str = "", nofile: int | None = None) -> Gateway:
        sha = base64.b64encode(hashlib.sha1(b"alice-pw").digest()).decode()
        admin = base64.b64encode(hashlib.sha1(b"admin-pw").digest()).decode()
        (tmp_path / "users.htpasswd").write_text(f"alice:{{SHA}}{sha}\nadmin:{{SHA}}{admin}\n")
        port = free_port()
        config = write_config(
            tmp_path,
            f"""
[server]
listen = "127.0.0.1:{port}"
state_dir = "var"
{server}
[auth]
mode = "basic"
users_file = "users.htpasswd"
allow_insecure_basic = true
admins = ["admin"]
{auth}
[sources.demo]
type = "vcard-dir"
path = "{contacts_dir}"
[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
write_to = "demo"
""",
        )
        log = tmp_path / f"serve-{port}.log"

        def limit_descriptors() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with open(log, "ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=limit_descriptors,
            )
        gateway = Gateway(process, port, tmp_path, log)
        started.append(gateway)
        wait_listening(process, port, log)
        return gateway

    yield start
    for each in started:
        stop_process(each.process)


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def closed_by_server(sock: socket.socket, seconds: float = 30.0) -> bool:
    """True once the server closes `sock` (EOF or reset) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def busy(port: int) -> socket.socket:
    """A connection in the middle of sending its request: not idle, so never closed to
    make room for another."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    return sock


def gzip_bomb(inflated: int) -> bytes:
    """A gzip body of zeros that inflates to `inflated` bytes (about 1,000 : 1)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    parts = [packer.compress(chunk) for _ in range(inflated // len(chunk))]
    return b"".join(parts) + packer.flush()


async def test_compressed_bodies_are_refused_unread(gateway: GatewayFactory) -> None:
    """Four 256 MiB gzip bombs, unauthenticated and authenticated: 415 each, while the
    gateway spends far less CPU than inflating one of them would take."""
    gw = gateway()
    bomb = gzip_bomb(256 << 20)
    assert len(bomb) < 512 * 1024
    before = gw.cpu_seconds()
    async with aiohttp.ClientSession() as session:

        async def send(path: str, method: str, auth: bool) -> int:
            headers = {"Content-Encoding": "gzip", "Content-Type": "application/xml"}
            if auth:
                headers["Authorization"] = f"Basic {CREDENTIALS}"
            async with session.request(
                method, gw.url + path, data=bomb, headers=headers, compress=None
            ) as response:
                return response.status

        statuses = await asyncio.gather(
            send(DOCUMENT, "PUT", auth=False),
            send(DOCUMENT, "PUT", auth=True),
            send("/healthz", "POST", auth=False),
            send(DOCUMENT, "PUT", auth=True),
        )
        async with session.get(gw.url + "/healthz") as probe:
            assert probe.status == 200
    assert statuses == [415, 415, 415, 415]
    # Inflating 1 GiB costs seconds; reading 2 MB of raw bytes costs next to nothing.
    assert gw.cpu_seconds() - before < 2.0


def test_a_slow_header_is_cut_off(gateway: GatewayFactory) -> None:
    """Connections sending a header line now and then are closed after header_timeout,
    however faithfully they keep sending."""
    gw = gateway(server='header_timeout = "1s"')
    socks = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(20)]
    for sock in socks:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    deadline = time.monotonic() + 30
    open_socks = list(socks)
    while open_socks and time.monotonic() < deadline:
        for sock in list(open_socks):
            try:
                sock.sendall(b"X-Trickle: 1\r\n")
            except OSError:
                open_socks.remove(sock)
                continue
            sock.settimeout(0.1)
            try:
                if sock.recv(4096) == b"":
                    open_socks.remove(sock)
            except TimeoutError:
                pass
            except ConnectionError:
                open_socks.remove(sock)
    assert not open_socks, f"{len(open_socks)} slow connections still open after 30 s"
    for sock in socks:
        sock.close()


def test_a_silent_connection_and_an_idle_keep_alive_are_closed(gateway: GatewayFactory) -> None:
    gw = gateway(server='header_timeout = "1s"\nkeepalive_timeout = "1s"')
    silent = socket.create_connection(("127.0.0.1", gw.port))
    assert closed_by_server(silent)
    idle = socket.create_connection(("127.0.0.1", gw.port))
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    idle.settimeout(10)
    assert idle.recv(4096).startswith(b"HTTP/1.1 200")
    assert closed_by_server(idle)
    silent.close()
    idle.close()


def test_connections_beyond_the_cap_get_503_and_the_service_stays_reachable(
    gateway: GatewayFactory,
) -> None:
    gw = gateway(server='max_connections = 10\nheader_timeout = "2s"')
    held = [busy(gw.port) for _ in range(10)]
    extra = socket.create_connection(("127.0.0.1", gw.port))
    extra.settimeout(10)
    answer = extra.recv(4096)
    assert answer.startswith(b"HTTP/1.1 503"), answer
    assert b"Retry-After:" in answer
    extra.close()
    # The held ones time out (no header), and then the gateway answers again.
    for sock in held:
        assert closed_by_server(sock)
        sock.close()

    def healthy() -> bool:
        with socket.create_connection(("127.0.0.1", gw.port)) as probe:
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            probe.settimeout(10)
            return probe.recv(4096).startswith(b"HTTP/1.1 200")

    wait_for(healthy, "the gateway to answer again")
    assert "event=connections_capped" in gw.log.read_text()


def test_a_low_descriptor_limit_caps_connections_below_it(gateway: GatewayFactory) -> None:
    """Under `ulimit -n 256`, 1,100 connections neither exhaust the descriptors nor fill
    the log with accept() tracebacks, and the gateway answers once they are gone."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:  # this test process holds the 1,100 client ends
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    gw = gateway(server='header_timeout = "3s"', nofile=256)
    limited = re.search(r"event=connections_limited max_connections=(\d+)", gw.log.read_text())
    assert limited is not None
    # The reserve holds a whole accept backlog besides the database and the sources.
    assert int(limited[1]) <= 256 - connection_guard.BACKLOG - connection_guard.MIN_RESERVE
    socks: list[socket.socket] = []
    refused = 0
    for _ in range(1100):
        try:
            socks.append(socket.create_connection(("127.0.0.1", gw.port), timeout=5))
        except OSError:
            refused += 1
    for sock in socks:
        sock.close()

    def healthy() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as probe:
                probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                probe.settimeout(10)
                return probe.recv(4096).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    wait_for(healthy, "the gateway to answer after the flood")
    log = gw.log.read_text()
    assert "Traceback" not in log
    assert "out of system resource" not in log
    assert len(log) < 200_000


def test_unparsable_headers_are_logged_without_their_values(gateway: GatewayFactory) -> None:
    gw = gateway()
    attacks = [
        f"GET {DOCUMENT} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {CREDENTIALS}\r\n"
        " continued\r\n\r\n",
        f"GET {DOCUMENT} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {CREDENTIALS}\x01\r\n\r\n",
    ] * 30
    for raw in attacks:
        with socket.create_connection(("127.0.0.1", gw.port)) as sock:
            sock.sendall(raw.encode())
            sock.settimeout(10)
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400")
            assert b"Server: xcap-gateway\r\n" in answer
            assert CREDENTIALS.encode() not in answer
    wait_for(lambda: "event=bad_request" in gw.log.read_text(), "the bad_request event")
    log = gw.log.read_text()
    assert CREDENTIALS not in log and "alice-pw" not in log
    assert "Traceback" not in log
    # Rate-limited: 60 bad requests, at most a burst of lines.
    assert log.count("event=bad_request") <= connection_guard.RateLimitedLog().burst


async def test_the_server_header_names_no_versions(gateway: GatewayFactory) -> None:
    gw = gateway()
    async with aiohttp.ClientSession() as session:
        for path, status in (("/healthz", 200), (DOCUMENT, 401), ("/nowhere", 401)):
            async with session.get(gw.url + path) as response:
                assert response.status == status
                assert response.headers["Server"] == "xcap-gateway"


async def test_metrics_can_be_switched_off(gateway: GatewayFactory) -> None:
    gw = gateway(server='metrics = "off"')
    async with aiohttp.ClientSession() as session, session.get(gw.url + "/metrics") as response:
        assert response.status == 404


async def test_metrics_for_admins_only(gateway: GatewayFactory) -> None:
    gw = gateway(server='metrics = "admins"')
    admin = base64.b64encode(b"admin:admin-pw").decode()
    async with aiohttp.ClientSession() as session:
        for headers, status in (
            ({}, 401),
            ({"Authorization": f"Basic {CREDENTIALS}"}, 403),
            ({"Authorization": f"Basic {admin}"}, 200),
        ):
            async with session.get(gw.url + "/metrics", headers=headers) as response:
                assert response.status == status, headers
        async with session.get(gw.url + "/healthz") as response:
            assert response.status == 200


async def test_metrics_on_their_own_listener(gateway: GatewayFactory) -> None:
    metrics_port = free_port()
    gw = gateway(server=f'metrics_listen = "127.0.0.1:{metrics_port}"')
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.url + "/metrics") as response:
            assert response.status == 404
        async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            assert response.status == 200
            assert "xcap_requests_total" in await response.text()
            assert response.headers["Server"] == "xcap-gateway"
        async with session.get(f"http://127.0.0.1:{metrics_port}{DOCUMENT}") as response:
            assert response.status == 404  # no documents there, to anyone


def test_state_is_owner_only(gateway: GatewayFactory, tmp_path: Path) -> None:
    state = tmp_path / "var"
    state.mkdir(mode=0o755)
    state.chmod(0o755)  # as an older version, or a careless umask, left it
    (state / ".control-killed").mkdir()  # a server killed between bind and rename left it
    (state / ".control-killed" / "s").write_text("")
    gw = gateway()
    socket_file = state / "control.sock"
    wait_for(socket_file.exists, "the control socket")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for file in state.iterdir():
        mode = stat.S_IMODE(file.stat().st_mode)
        assert mode == 0o600, f"{file.name} is {oct(mode)}"
    assert not [p for p in state.iterdir() if p.name.startswith(".control-")]
    assert "event=permissions_tightened" in gw.log.read_text()


def test_a_state_dir_the_gateway_creates_is_owner_only_without_a_warning(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    """Made 0700 from the start: a warning that it was 'tightened' would send an
    administrator looking for a mistake nobody made."""
    state = tmp_path / "var"
    assert not state.exists()
    gw = gateway()
    wait_for((state / "control.sock").exists, "the control socket")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert "permissions_tightened" not in gw.log.read_text()


def test_a_new_state_database_is_never_readable_by_others(tmp_path: Path) -> None:
    """Under a permissive umask, too: the file is made 0600 before SQLite opens it."""
    from gateway.store_sqlite import SqliteStore as Store

    old = os.umask(0o000)
    try:
        store = Store(tmp_path / "state" / "db.sqlite3")
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
        for file in (tmp_path / "state").iterdir():
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
    finally:
        store.close()


def test_the_handler_hooks_still_match_aiohttp() -> None:
    """The guard reads two attributes of aiohttp's RequestHandler: fail loudly if an
    upgrade renames them, rather than silently losing the header timeout."""
    from aiohttp.web_protocol import RequestHandler

    assert {"_waiter", "_request_count", "_force_close"} <= set(RequestHandler.__slots__)


async def test_unfinished_tls_handshakes_hold_a_slot_only_until_the_timeout(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    ca = trustme.CA()
    write_cert(tmp_path, ca)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    secure = free_port()
    gw = gateway(
        server=f'tls_listen = "127.0.0.1:{secure}"\ntls_cert = "cert.pem"\ntls_key = "key.pem"\n'
        'max_connections = 3\nheader_timeout = "1s"'
    )
    # Three connections that never send a ClientHello take every slot...
    silent = [socket.create_connection(("127.0.0.1", secure)) for _ in range(3)]
    url = f"https://127.0.0.1:{secure}/healthz"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=trusting) as response:
            assert response.status == 503
        # ...until the handshake timeout closes them and frees the slots.
        for sock in silent:
            assert closed_by_server(sock)
            sock.close()
        deadline = time.monotonic() + 30
        while True:
            async with session.get(url, ssl=trusting) as response:
                if response.status == 200:
                    break
            assert time.monotonic() < deadline, "the slots were never freed"
            await asyncio.sleep(0.1)
    assert gw.process.poll() is None


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_an_unfinished_header_is_bounded_in_bytes(gateway: GatewayFactory) -> None:
    """200 connections each sending 1 MB of header fields (each field under aiohttp's own
    limits) and never finishing: each gets 431 after max_header_size, and the gateway's
    memory does not grow by the megabytes it was sent."""
    gw = gateway(
        server='max_header_size = 16384\nheader_timeout = "60s"\nmax_connections_per_address = 1000'
    )
    before = rss_kib(gw.process.pid)
    field = b"X-Pad: " + b"p" * 8000 + b"\r\n"
    socks = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(200)]
    answers = []
    for sock in socks:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(127):
                sock.sendall(field)
        except OSError:
            pass  # closed on us: the point
        sock.settimeout(10)
        try:
            answers.append(sock.recv(4096))
        except TimeoutError:
            raise AssertionError("a connection holding 1 MB of header is still open") from None
        except OSError:
            answers.append(b"")  # reset: our surplus bytes hit a closed socket
    grown = rss_kib(gw.process.pid) - before
    for sock in socks:
        sock.close()
    assert all(a.startswith(b"HTTP/1.1 431") or a == b"" for a in answers), {
        a[:40] for a in answers
    }
    assert any(a.startswith(b"HTTP/1.1 431") for a in answers)
    assert grown < 64 * 1024, f"grew by {grown} KiB"


def test_one_address_cannot_take_every_connection(gateway: GatewayFactory) -> None:
    gw = gateway(server='max_connections_per_address = 5\nheader_timeout = "30s"')
    held = [busy(gw.port) for _ in range(5)]
    with socket.create_connection(("127.0.0.1", gw.port)) as sixth:
        sixth.settimeout(10)
        assert sixth.recv(4096).startswith(b"HTTP/1.1 503")
    # Another address (all of 127/8 is loopback) still gets in.
    with socket.create_connection(("127.0.0.1", gw.port), source_address=("127.0.0.2", 0)) as other:
        other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        other.settimeout(10)
        assert other.recv(4096).startswith(b"HTTP/1.1 200")
    for sock in held:
        sock.close()
    assert "reason=max_connections_per_address" in gw.log.read_text()


def test_health_checks_on_the_metrics_listener_survive_a_flood(gateway: GatewayFactory) -> None:
    metrics_port = free_port()
    gw = gateway(
        server=f'metrics_listen = "127.0.0.1:{metrics_port}"\nmax_connections = 5\n'
        'header_timeout = "30s"'
    )
    held = [busy(gw.port) for _ in range(5)]
    with socket.create_connection(("127.0.0.1", gw.port)) as refused:
        refused.settimeout(10)
        assert refused.recv(4096).startswith(b"HTTP/1.1 503")
    with socket.create_connection(("127.0.0.1", metrics_port)) as probe:
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        probe.settimeout(10)
        assert probe.recv(4096).startswith(b"HTTP/1.1 200")
    for sock in held:
        sock.close()


def test_client_chosen_values_reach_the_log_escaped_and_clipped(gateway: GatewayFactory) -> None:
    gw = gateway()
    escape = "/x%1B[31mRED%1B[0m%0D%08"
    long_path = "/" + "L" * 7000
    for path in (escape, long_path):
        with socket.create_connection(("127.0.0.1", gw.port)) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            sock.settimeout(10)
            assert sock.recv(4096).startswith(b"HTTP/1.1 401")
    wait_for(lambda: "L" * 100 in gw.log.read_text(), "the long path's request line")
    raw = gw.log.read_bytes()
    assert b"\x1b" not in raw and b"\r" not in raw and b"\x08" not in raw
    assert b"\\x1b[31mRED" in raw
    line = next(line for line in raw.splitlines() if b"L" * 100 in line)
    assert len(line) < 1500


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder someone else's needs root")
def test_a_state_dir_owned_by_someone_else_is_left_as_it_is(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    """A volume owned by root with group access for the gateway (Kubernetes' fsGroup):
    not the gateway's to change; it starts, warns, and its own files are still 0600."""
    state = tmp_path / "var"
    state.mkdir()
    os.chown(state, 12345, 12345)
    state.chmod(0o2775)
    gw = gateway()
    assert stat.S_IMODE(state.stat().st_mode) == 0o2775
    assert "event=permissions_left_open" in gw.log.read_text()
    database = state / "xcap-gateway.sqlite3"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


def test_idle_keep_alive_connections_make_room_for_new_ones(gateway: GatewayFactory) -> None:
    """Phones behind one NAT each leave a keep-alive connection open after their poll:
    the next phone gets in, and the oldest idle connection is closed for it."""
    gw = gateway(server="max_connections_per_address = 5")
    kept = []
    for _ in range(12):
        sock = socket.create_connection(("127.0.0.1", gw.port))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        kept.append(sock)
    assert closed_by_server(kept[0])  # the oldest made room
    for sock in kept:
        sock.close()
    # A request under way is never cut for a newcomer.
    held = [busy(gw.port) for _ in range(5)]
    with socket.create_connection(("127.0.0.1", gw.port)) as sixth:
        sixth.settimeout(10)
        assert sixth.recv(4096).startswith(b"HTTP/1.1 503")
    for sock in held:
        sock.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()


def test_a_newcomer_refused_for_its_address_closes_nobody(gateway: GatewayFactory) -> None:
    gw = gateway(server="max_connections = 3\nmax_connections_per_address = 2")
    victim = socket.create_connection(("127.0.0.1", gw.port), source_address=("127.0.0.2", 0))
    victim.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # then idle, kept alive
    victim.settimeout(10)
    assert victim.recv(4096).startswith(b"HTTP/1.1 200")
    held = [busy(gw.port) for _ in range(2)]  # this address's allowance, and the cap
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", gw.port)) as extra:
            extra.settimeout(10)
            assert extra.recv(4096).startswith(b"HTTP/1.1 503")
    victim.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert victim.recv(4096).startswith(b"HTTP/1.1 200"), "the idle victim was closed"
    victim.close()
    for sock in held:
        sock.close()
