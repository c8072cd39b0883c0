"""User files: Apache htdigest (digest) and htpasswd (basic), re-read when they change.

htdigest lines are `user:realm:HA1`; a 32-hex HA1 is MD5, a 64-hex one SHA-256 (add both
for clients of either algorithm). htpasswd lines are `user:hash` with the hashes Apache's
`htpasswd` writes: MD5 (`$apr1$`, its default), bcrypt (`$2y$`, also `$2a$`/`$2b$`), SHA-1
(`{SHA}`) and SHA-256/512-crypt (`$5$`, `$6$`). bcrypt is checked by the bcrypt package,
the others by passlib (libpass); a hash neither can read fails the login, like a wrong
password. Like Apache, bcrypt looks at the first 72 bytes of a password only.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

import bcrypt
from passlib.context import CryptContext  # type: ignore[import-untyped]  # libpass: no stubs

from gateway.logs import event

#: How often the file's modification time is looked at.
CHECK_SECONDS = 2.0
BCRYPT_PREFIXES = ("$2y$", "$2b$", "$2a$")
_BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
_SHA1 = re.compile(r"\{SHA\}[A-Za-z0-9+/]{27}=")
#: bcrypt's input limit; Apache's htpasswd (and bcrypt before 5.0) cut passwords there.
BCRYPT_MAX_BYTES = 72
#: The htpasswd schemes besides bcrypt. No DES crypt (8 characters) and no plain text.
_CONTEXT = CryptContext(schemes=["apr_md5_crypt", "ldap_sha1", "sha256_crypt", "sha512_crypt"])
#: Checked for an unknown user when the file has no hash: the cost of `htpasswd -B`.
_FALLBACK_DUMMY = bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(rounds=5)).decode()


def _verify(password: str, stored: str) -> bool:
    """Whether `password` matches the htpasswd hash `stored`; False for a hash that does
    not parse (never an exception)."""
    secret = password.encode("utf-8", "surrogateescape")
    try:
        if stored.startswith(BCRYPT_PREFIXES):
            # $2y$ and $2a$ (from a correct implementation) are $2b$.
            return bcrypt.checkpw(secret[:BCRYPT_MAX_BYTES], b"$2b$" + stored[4:].encode())
        return bool(_CONTEXT.verify(secret, stored))
    except (ValueError, TypeError):
        return False


def _parses(stored: str) -> bool:
    """Whether `stored` is a whole hash of a scheme read here (not just its prefix)."""
    if stored.startswith(BCRYPT_PREFIXES):
        return _BCRYPT.fullmatch(stored) is not None
    if stored.startswith("{SHA}"):
        return _SHA1.fullmatch(stored) is not None
    scheme = _CONTEXT.identify(stored)
    if scheme is None:
        return False
    try:
        return _CONTEXT.handler(scheme).from_string(stored).checksum is not None
    except (ValueError, TypeError):
        return False


def _estimated_ms(stored: str) -> float:
    """Roughly how long checking a password against `stored` takes, to rank schemes:
    bcrypt doubles with each cost step, SHA-crypt grows with its rounds, apr1 is a
    thousand MD5 rounds, {SHA} one SHA-1."""
    if stored.startswith(BCRYPT_PREFIXES):
        return 0.06 * (1 << int(stored[4:6]))
    if stored.startswith(("$5$", "$6$")):
        rounds = 5000
        if stored[3:10] == "rounds=" and (digits := stored[10:].split("$", 1)[0]).isdigit():
            rounds = int(digits)
        return 0.001 * rounds
    if stored.startswith("$apr1$"):
        return 0.3
    return 0.001


def _cost_class(stored: str) -> str:
    """The scheme and cost parameter of a hash: hashes of one class take equally long."""
    if stored.startswith(BCRYPT_PREFIXES):
        return "bcrypt" + stored[3:7]
    if stored.startswith(("$5$", "$6$")):
        return stored[:3] + (stored.split("$", 3)[2] if stored[3:10] == "rounds=" else "")
    return stored.split("$", 2)[1] if stored.startswith("$") else stored[:5]


class UserFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._lines: dict[str, list[list[str]]] = {}
        self._dummy = _FALLBACK_DUMMY
        self._dummy_class = _cost_class(_FALLBACK_DUMMY)

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
                try:
                    lines = self._read()
                except (OSError, UnicodeDecodeError) as exc:
                    detail = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
                    event("users_file_unreadable", logging.ERROR, path=self.path, detail=detail)
                    return self._lines
                self._stamp, self._lines = stamp, lines
                self._dummy = self._pick_dummy(lines)
                self._dummy_class = _cost_class(self._dummy)
                event("users_file_loaded", path=self.path, users=len(self._lines))
        return self._lines

    def _read(self) -> dict[str, list[list[str]]]:
        lines: dict[str, list[list[str]]] = {}
        # utf-8-sig: a byte-order mark (Windows editors) is not part of the first name.
        for raw in self.path.read_text(encoding="utf-8-sig").splitlines():
            if raw.strip() and not raw.lstrip().startswith("#"):
                fields = raw.strip().split(":")
                if fields[0]:  # ":hash" names nobody (an empty login must not log in)
                    lines.setdefault(fields[0], []).append(fields[1:])
        return lines

    @staticmethod
    def _pick_dummy(lines: dict[str, list[list[str]]]) -> str:
        """A hash of the file's slowest scheme and cost. Every check takes as long as one
        against it: an unknown user's is against it, and a known user whose hash is faster
        checks it too. Else the answer time tells who exists, or which users (admins,
        often) have the stronger hashes."""
        hashes = [":".join(fields[0]) for fields in lines.values() if fields]
        usable = [h for h in hashes if _parses(h)]
        if not usable:
            return _FALLBACK_DUMMY
        return max(usable, key=_estimated_ms)

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
        """Blocking (the hashes are slow on purpose): call from a worker thread. Every
        answer takes as long as a check against the file's slowest hash (see _pick_dummy)."""
        entries = self._entries().get(user)
        if not entries:
            _verify(password, self._dummy)
            return False
        stored = ":".join(entries[0])
        if _cost_class(stored) != self._dummy_class:
            _verify(password, self._dummy)
        return _verify(password, stored)
