"""HTTP Digest authentication, server side (RFC 7616): MD5 and SHA-256, qop=auth.

Nonces carry their creation time and an HMAC, so any worker can check them without
state; an expired one is answered with stale=true (the client retries without asking the
user). Each nonce's highest nonce-count is remembered, so a replayed request fails.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable

ALGORITHMS = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


class DigestFailed(Exception):
    def __init__(self, reason: str, stale: bool = False, user: str | None = None) -> None:
        super().__init__(reason)
        self.stale = stale
        self.user = user


def _h(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode()).hexdigest()


def parse_params(header: str) -> dict[str, str]:
    return {
        m[1].lower(): (m[2] if m[2] is not None else m[3]).replace('\\"', '"')
        for m in _PARAM.finditer(header)
    }


class Digest:
    def __init__(self, lifetime: float, secret: bytes | None = None) -> None:
        self.lifetime = lifetime
        self._secret = secret or os.urandom(32)
        self._counts: dict[str, int] = {}

    def nonce(self) -> str:
        stamp = f"{time.time():.3f}-{os.urandom(8).hex()}"
        signature = hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{stamp}-{signature}"

    def challenges(self, realm: str, algorithms: list[str], stale: bool = False) -> list[str]:
        """WWW-Authenticate values, strongest first (clients take the first they know).
        Only algorithms the user file has hashes for are offered."""
        nonce, opaque = self.nonce(), hashlib.sha256(self._secret).hexdigest()[:16]
        extra = ", stale=true" if stale else ""
        return [
            f'Digest realm="{realm}", qop="auth", algorithm={name}, nonce="{nonce}", '
            f'opaque="{opaque}"{extra}'
            for name in algorithms
        ]

    def _check_nonce(self, nonce: str) -> bool:
        """True when fresh; False when expired; DigestFailed when forged."""
        try:
            created, random_part, signature = nonce.split("-")
        except ValueError:
            raise DigestFailed("malformed nonce") from None
        expected = hmac.new(self._secret, f"{created}-{random_part}".encode(), hashlib.sha256)
        if not hmac.compare_digest(signature, expected.hexdigest()[:32]):
            raise DigestFailed("forged nonce")
        return time.time() - float(created) <= self.lifetime

    def verify(
        self,
        header: str,
        method: str,
        uri: str,
        realm: str,
        ha1: Callable[[str, str, str], str | None],
    ) -> str:
        """The user a Digest Authorization header proves; DigestFailed otherwise.
        `ha1(user, realm, algorithm)` looks the stored HA1 up."""
        params = parse_params(header)
        user = params.get("username", "")
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in ALGORITHMS:
            raise DigestFailed(f"algorithm {algorithm} is not offered", user=user)
        needed = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
        if any(name not in params for name in needed) or params["qop"] != "auth":
            raise DigestFailed("incomplete digest credentials (qop=auth is required)", user=user)
        if params["realm"] != realm:
            raise DigestFailed("wrong realm", user=user)
        if params["uri"] != uri:
            raise DigestFailed("digest uri does not match the request", user=user)
        fresh = self._check_nonce(params["nonce"])
        stored = ha1(user, realm, algorithm)
        if stored is None:
            raise DigestFailed("unknown user", user=user)
        ha2 = _h(algorithm, f"{method}:{params['uri']}")
        expected = _h(
            algorithm, f"{stored}:{params['nonce']}:{params['nc']}:{params['cnonce']}:auth:{ha2}"
        )
        if not hmac.compare_digest(expected, params["response"].lower()):
            raise DigestFailed("wrong password", user=user)
        if not fresh:
            raise DigestFailed("nonce expired", stale=True, user=user)
        try:
            count = int(params["nc"], 16)
        except ValueError:
            raise DigestFailed("bad nonce count", user=user) from None
        if count <= self._counts.get(params["nonce"], 0):
            raise DigestFailed("replayed nonce count", user=user)
        self._remember(params["nonce"], count)
        return user

    def _remember(self, nonce: str, count: int) -> None:
        self._counts[nonce] = count
        if len(self._counts) > 100_000:  # keep only nonces that can still be used
            horizon = time.time() - self.lifetime
            self._counts = {
                n: c for n, c in self._counts.items() if float(n.split("-")[0]) >= horizon
            }
