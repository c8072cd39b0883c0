"""Real CardDAV servers for tests: Radicale (with accounts) and Xandikos (single user),
each started in a temp folder on 127.0.0.1 and stopped at the end."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import free_port, stop_process, wait_listening

BIN = Path(sys.executable).parent
ADDRESSBOOK_MKCOL = b"""<?xml version="1.0" encoding="utf-8"?>
<mkcol xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><set><prop>
<resourcetype><collection/><C:addressbook/></resourcetype><displayname>%s</displayname>
</prop></set></mkcol>"""


@dataclass
class DavServer:
    folder: Path
    port: int
    users: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (again, after `stop`) on the same port with the same data."""
        with open(self.folder / "server.log", "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        self.wait()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self) -> None:
        assert self.process is not None
        wait_listening(self.process, self.port, self.folder / "server.log")

    def stop(self) -> None:
        stop_process(self.process)

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        user: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        """A plain HTTP request with the standard library, for seeding and checking."""
        req = urllib.request.Request(
            self.origin + path, data=body or None, method=method, headers=dict(headers or {})
        )
        if user is not None:
            token = b64encode(f"{user}:{self.users[user]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=20) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)

    def make_book(self, path: str, user: str | None = None, name: str = "Contacts") -> None:
        status, body, _ = self.request(
            "MKCOL",
            path,
            ADDRESSBOOK_MKCOL % name.encode(),
            user,
            {"Content-Type": "application/xml"},
        )
        assert status == 201, (status, body)

    def put_card(self, path: str, text: str, user: str | None = None) -> str:
        status, body, headers = self.request(
            "PUT", path, text.encode(), user, {"Content-Type": "text/vcard"}
        )
        assert status in (201, 204), (status, body)
        return headers.get("ETag", "")


def start_radicale(folder: Path, users: dict[str, str], rights: str = "owner_only") -> DavServer:
    server = DavServer(folder, free_port(), users)
    (folder / "users").write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
    extra = ""
    if rights == "from_file":
        # The service account reads and writes everyone's books; others only their own.
        (folder / "rights").write_text(
            "[service]\nuser: svc\ncollection: .*\npermissions: RrWw\n\n"
            "[owner]\nuser: .+\ncollection: {user}(/.*)?\npermissions: RrWw\n\n"
            "[root]\nuser: .+\ncollection:\npermissions: R\n"
        )
        extra = f"file = {folder}/rights\n"
    (folder / "config").write_text(f"""[server]
hosts = 127.0.0.1:{server.port}
[auth]
type = htpasswd
htpasswd_filename = {folder}/users
htpasswd_encryption = plain
delay = 0
[storage]
filesystem_folder = {folder}/collections
[rights]
type = {rights}
{extra}[logging]
level = warning
""")
    server.command = [sys.executable, "-m", "radicale", "--config", str(folder / "config")]
    server.start()
    return server


def start_xandikos(folder: Path) -> DavServer:
    server = DavServer(folder, free_port())
    server.command = [
        str(BIN / "xandikos"),
        "serve",
        "--defaults",
        "-d",
        str(folder / "data"),
        "--state-dir",
        str(folder / "state"),
        "-l",
        "127.0.0.1",
        "-p",
        str(server.port),
    ]
    server.start()
    return server


def vcard(uid: str, name: str, *lines: str) -> str:
    body = "".join(line + "\r\n" for line in lines)
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\n{body}END:VCARD\r\n"
