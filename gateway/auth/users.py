"""User files: Apache htdigest (digest) and htpasswd (basic), re-read when they change.

htdigest lines are `user:realm:HA1`; a 32-hex HA1 is MD5, a 64-hex one SHA-256 (add both
for clients of either algorithm). htpasswd lines are `user:hash` with bcrypt (`$2y$…`)
or SHA-1 (`{SHA}…`) hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import time
from pathlib import Path

import bcrypt

from gateway.logs import event

#: How often the file's modification time is looked at.
CHECK_SECONDS = 2.0


class UserFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._lines: dict[str, list[list[str]]] = {}

    def _entries(self) -> dict[str, list[list[str]]]:
        now = time.monotonic()
        if now - self._checked >= CHECK_SECONDS:
            self._checked = now
            try:
                stat = os.stat(self.path)
            except OSError as exc:
                event("users_file_unreadable", logging.ERROR, path=self.path, detail=exc.strerror)
                return self._lines
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                self._stamp = stamp
                self._lines = self._read()
                event("users_file_loaded", path=self.path, users=len(self._lines))
        return self._lines

    def _read(self) -> dict[str, list[list[str]]]:
        lines: dict[str, list[list[str]]] = {}
        for raw in self.path.read_text(encoding="utf-8").splitlines():
            if raw.strip() and not raw.lstrip().startswith("#"):
                fields = raw.strip().split(":")
                lines.setdefault(fields[0], []).append(fields[1:])
        return lines

    def algorithms(self) -> list[str]:
        """The digest algorithms the file has hashes for, strongest first."""
        lengths = {len(f[1]) for lines in self._entries().values() for f in lines if len(f) == 2}
        return [name for name, size in (("SHA-256", 64), ("MD5", 32)) if size in lengths] or ["MD5"]

    def digest_ha1(self, user: str, realm: str, algorithm: str) -> str | None:
        """The stored HA1 of `user` in `realm` for "MD5" or "SHA-256"."""
        length = 64 if algorithm == "SHA-256" else 32
        for fields in self._entries().get(user, []):
            if len(fields) == 2 and fields[0] == realm and len(fields[1]) == length:
                return fields[1].lower()
        return None

    def check_password(self, user: str, password: str) -> bool:
        """Blocking (bcrypt is slow on purpose): call from a worker thread."""
        for fields in self._entries().get(user, []):
            stored = ":".join(fields)
            if stored.startswith(("$2y$", "$2b$", "$2a$")):
                candidate = b"$2b$" + stored[4:].encode()
                return bcrypt.checkpw(password.encode(), candidate)
            if stored.startswith("{SHA}"):
                digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
                return hmac.compare_digest(stored[5:], digest)
        return False
