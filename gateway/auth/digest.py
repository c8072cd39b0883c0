"""HTTP Digest authentication, server side (RFC 7616): MD5 and SHA-256, qop=auth.

Nonces carry their creation time and an HMAC over it and the realm they were issued for,
so any worker can check them without state and a nonce of one realm is worth nothing in
another; an expired one is answered with stale=true (the client retries without asking
the user). The highest nonce-count each user sent with each nonce is remembered, so a
replayed request fails, and one user's requests cannot spoil another's nonce. Those
counts are kept in the order they were first used and pruned from the front, a few at a
time, once their nonce has expired.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import string
import time
from collections import OrderedDict
from collections.abc import Callable

ALGORITHMS = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_NONCE_COUNT = re.compile(r"[0-9a-fA-F]{8}")
_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
#: What a request target may hold literally (RFC 3986 pchar, "/", "?", and "%" escapes).
_TARGET_CHARS = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?%")
#: Past this many remembered (user, nonce) counts, the oldest are forgotten and nonces
#: as old as theirs are answered stale (clients just fetch a new one).
MAX_COUNTS = 100_000


class DigestFailed(Exception):
    def __init__(self, reason: str, stale: bool = False, user: str | None = None) -> None:
        super().__init__(reason)
        self.stale = stale
        self.user = user


class UriMismatch(DigestFailed):
    """The digest `uri` names another resource than the request: a malformed request
    (400), not a failed login."""


def _b(text: str) -> bytes:
    # aiohttp decodes header bytes that are not UTF-8 with surrogateescape: back to those.
    return text.encode("utf-8", "surrogateescape")


def _h(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](_b(text)).hexdigest()


def parse_params(header: str) -> dict[str, str]:
    """The auth-params of a Digest credentials string; DigestFailed if one is repeated."""
    params: dict[str, str] = {}
    for m in _PARAM.finditer(header):
        name = m[1].lower()
        if name in params:
            raise DigestFailed(f"parameter {name} given twice")
        params[name] = _QUOTED_PAIR.sub(r"\1", m[2]) if m[2] is not None else m[3]
    return params


def _canonical_target(text: str) -> str:
    """`text` with what a request target cannot hold literally percent-encoded, and every
    escape in upper case. Nothing is decoded, so `%2F` and `/` stay different."""
    encoded = "".join(
        char if char in _TARGET_CHARS else "".join(f"%{byte:02X}" for byte in _b(char))
        for char in text
    )
    return _ESCAPE.sub(lambda m: m[0].upper(), encoded)


def uri_matches(sent: str, target: str) -> bool:
    """Whether the digest `uri` names the request target: the same text, or the same once
    characters a client left unescaped in `uri` (python3-xcaplib: the `"`, `[` and `]` of a
    node selector) are escaped as in the request line."""
    return sent == target or _canonical_target(sent) == _canonical_target(target)


class Digest:
    def __init__(self, lifetime: float, secret: bytes | None = None) -> None:
        self.lifetime = lifetime
        self._secret = secret or os.urandom(32)
        self.opaque = hashlib.sha256(b"opaque" + self._secret).hexdigest()[:16]
        # (user, nonce) -> (highest count, first used, nonce created), oldest first use first
        self._counts: OrderedDict[tuple[str, str], tuple[int, float, float]] = OrderedDict()
        self._forgotten = 0.0  # nonces created up to this time are answered stale

    def _sign(self, stamp: str, realm: str) -> str:
        text = _b(f"{stamp}\n{realm}")
        return hmac.new(self._secret, text, hashlib.sha256).hexdigest()[:32]

    def nonce(self, realm: str) -> str:
        stamp = f"{time.time():.3f}-{os.urandom(8).hex()}"
        return f"{stamp}-{self._sign(stamp, realm)}"

    def challenges(self, realm: str, algorithms: list[str], stale: bool = False) -> list[str]:
        """WWW-Authenticate values, strongest first (clients take the first they know).
        Only algorithms the user file has hashes for are offered."""
        nonce = self.nonce(realm)
        extra = ", stale=true" if stale else ""
        return [
            f'Digest realm="{realm}", qop="auth", algorithm={name}, nonce="{nonce}", '
            f'opaque="{self.opaque}"{extra}'
            for name in algorithms
        ]

    def _nonce_state(self, nonce: str, realm: str) -> tuple[str, float]:
        """("fresh" | "expired" | "foreign", created): foreign when not signed here for
        this realm (another realm, an earlier process, or forged)."""
        parts = nonce.split("-")
        if len(parts) != 3 or not re.fullmatch(r"\d{1,12}\.\d{3}", parts[0]):
            raise DigestFailed("malformed nonce")
        created, random_part, signature = parts
        expected = self._sign(f"{created}-{random_part}", realm)
        if not hmac.compare_digest(_b(signature), expected.encode()):
            return "foreign", 0.0
        stamp = float(created)
        if time.time() - stamp > self.lifetime or stamp <= self._forgotten:
            return "expired", stamp
        return "fresh", stamp

    def verify(
        self,
        header: str,
        method: str,
        uri: str,
        realm: str,
        ha1: Callable[[str, str, str], str | None],
    ) -> str:
        """The user a Digest Authorization header proves; DigestFailed otherwise
        (UriMismatch when it was made for another request target). `uri` is the request
        target as sent; `ha1(user, realm, algorithm)` looks the stored HA1 up."""
        params = parse_params(header)
        user = params.get("username", "")
        try:
            return self._verify(params, user, method, uri, realm, ha1)
        except UnicodeEncodeError:
            raise DigestFailed("undecodable digest credentials", user=user) from None

    def _verify(
        self,
        params: dict[str, str],
        user: str,
        method: str,
        uri: str,
        realm: str,
        ha1: Callable[[str, str, str], str | None],
    ) -> str:
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in ALGORITHMS:
            raise DigestFailed(f"algorithm {algorithm} is not offered", user=user)
        needed = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
        if any(name not in params for name in needed) or params["qop"] != "auth":
            raise DigestFailed("incomplete digest credentials (qop=auth is required)", user=user)
        if params["realm"] != realm:
            raise DigestFailed("wrong realm", user=user)
        if not uri_matches(params["uri"], uri):
            raise UriMismatch("digest uri does not match the request", user=user)
        state, created = self._nonce_state(params["nonce"], realm)
        stored = ha1(user, realm, algorithm)
        if stored is None:
            raise DigestFailed("unknown user", user=user)
        # HA2 over the uri as sent: that is what the client hashed.
        ha2 = _h(algorithm, f"{method}:{params['uri']}")
        expected = _h(
            algorithm, f"{stored}:{params['nonce']}:{params['nc']}:{params['cnonce']}:auth:{ha2}"
        )
        right = hmac.compare_digest(expected.encode(), _b(params["response"].lower()))
        if state == "foreign":
            # Right for a nonce not issued here (a restart, a changed realm): the client knows
            # the password, so it is told to fetch a nonce, not counted as a failure.
            raise DigestFailed("nonce not issued here" if right else "forged nonce", right, user)
        if not right:
            raise DigestFailed("wrong password", user=user)
        if not _NONCE_COUNT.fullmatch(params["nc"]):
            raise DigestFailed("nonce count is not 8 hex digits", user=user)
        if not hmac.compare_digest(_b(params.get("opaque", "")), self.opaque.encode()):
            raise DigestFailed("missing or wrong opaque", user=user)
        if state == "expired":
            raise DigestFailed("nonce expired", stale=True, user=user)
        count = int(params["nc"], 16)
        key = (user, params["nonce"])
        known = self._counts.get(key)
        if known is not None and count <= known[0]:
            raise DigestFailed("replayed nonce count", user=user)
        self._remember(key, count, known, created)
        return user

    def _remember(
        self,
        key: tuple[str, str],
        count: int,
        known: tuple[int, float, float] | None,
        created: float,
    ) -> None:
        now = time.time()
        # Replacing a key keeps its place: the order stays that of first use.
        self._counts[key] = (count, known[1] if known else now, created)
        # A count first used before `horizon` belongs to a nonce created before it, which
        # has expired: never asked for again. Each is removed once, so this is amortized.
        horizon = now - self.lifetime
        while self._counts:
            first = next(iter(self._counts.values()))
            if first[1] >= horizon and len(self._counts) <= MAX_COUNTS:
                break
            _, (_, used, made) = self._counts.popitem(last=False)
            if used >= horizon:  # dropped while its nonce still lives: make that nonce stale
                self._forgotten = max(self._forgotten, made)
