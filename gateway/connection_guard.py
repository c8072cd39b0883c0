"""How many connections the listeners hold: a cap over all of them, one per client
address, a reserve below the descriptor limit, and what a refused connection is told.
The per-connection side (GuardedRequestHandler) is in gateway.listeners."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.logs import event

if TYPE_CHECKING:
    from gateway.listeners import GuardedRequestHandler

#: What the `Server` header says: no versions to look vulnerabilities up by.
SERVER_NAME = "xcap-gateway"
#: Connections the kernel queues for us, and asyncio accepts in one go before any of them
#: reaches the guard: the descriptor reserve must hold them.
BACKLOG = 128
#: Descriptors kept free beyond the backlog: the database, sources, logs, control socket.
MIN_RESERVE = 64
#: Connections the metrics listeners (Prometheus, health probes) may hold together.
METRICS_CONNECTIONS = 16
#: Raising the soft limit beyond this buys nothing for a directory server.
MAX_DESCRIPTORS = 65536


def raw_response(status: str, text: str, extra: str = "") -> bytes:
    """A whole response for moments when aiohttp has no request to answer."""
    body = text.encode()
    return (
        f"HTTP/1.1 {status}\r\nServer: {SERVER_NAME}\r\n{extra}"
        f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


_REFUSED = raw_response(
    "503 Service Unavailable", "too many connections now\n", "Retry-After: 5\r\n"
)


def connection_budget(wanted: int) -> int:
    """The connection cap: `wanted`, but never closer than a reserve to the descriptor
    limit (whose soft value is raised to the hard one first, as servers do)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = MAX_DESCRIPTORS if hard == resource.RLIM_INFINITY else min(hard, MAX_DESCRIPTORS)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        soft = MAX_DESCRIPTORS
    reserve = max(BACKLOG + MIN_RESERVE, soft // 10)
    return max(1, min(wanted, soft - reserve))


class RateLimitedLog:
    """At most `burst` events per `period` seconds; the next one after a quiet spell says
    how many were left out."""

    def __init__(self, burst: int = 10, period: float = 60.0) -> None:
        self.burst, self.period = burst, period
        self._started = float("-inf")
        self._count = 0
        self._suppressed = 0

    def allow(self) -> tuple[bool, int]:
        """(log this one?, how many were suppressed before it)."""
        now = time.monotonic()
        if now - self._started >= self.period:
            self._started, self._count = now, 0
        if self._count >= self.burst:
            self._suppressed += 1
            return False, 0
        self._count += 1
        suppressed, self._suppressed = self._suppressed, 0
        return True, suppressed


@dataclass
class ConnectionGuard:
    """Counts the connections of every listener together and refuses those above `limit`.

    A connection counts from the moment it is accepted. One that never reaches
    connection_made (a TLS handshake that failed or timed out, a transport that could not
    be set up) is released by a sweep once `grace` seconds have passed: the handshake
    timeout has closed its socket by then.
    """

    limit: int
    per_address: int = 100
    grace: float = 11.0
    open: int = 0
    #: Connections made, by client address.
    by_address: dict[str, int] = field(default_factory=dict)
    #: Connections admitted and made, oldest first.
    live: dict[GuardedRequestHandler, None] = field(default_factory=dict)
    refused: int = 0
    parse_errors: RateLimitedLog = field(default_factory=RateLimitedLog)
    refusals: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(1, 60.0))
    #: Accepted, not yet made, in the order accepted, with the time they are given up.
    _pending: dict[GuardedRequestHandler, float] = field(default_factory=dict)

    def accepted(self, handler: GuardedRequestHandler) -> bool:
        """Count `handler`'s connection; False when it is over the limit."""
        now = time.monotonic()
        while self._pending:  # the oldest first: stop at the first still in time
            oldest, deadline = next(iter(self._pending.items()))
            if deadline > now:
                break
            del self._pending[oldest]
            oldest.release()
        admitted = self.open < self.limit
        self.open += 1
        self._pending[handler] = now + self.grace
        return admitted

    def made(self, handler: GuardedRequestHandler) -> None:
        self._pending.pop(handler, None)

    def admit_address(self, address: str) -> bool:
        """Count one more connection from `address`; False (not counted) when it has
        as many as it may and none of them is idle (an idle one is closed to make room)."""
        count = self.by_address.get(address, 0)
        if count >= self.per_address and not self.close_idle(address):
            return False
        self.by_address[address] = count + 1
        return True

    def close_idle(self, address: str | None = None) -> bool:
        """Close the oldest idle connection (of `address`, if given) to make room: a
        keep-alive connection between requests. Phones
        behind one NAT, each leaving its keep-alive open, must not lock each other out;
        a request under way is never cut."""
        for handler in self.live:
            if handler.idle and (address is None or handler.address == address):
                handler.force_close()
                return True
        return False

    def leave_address(self, address: str) -> None:
        count = self.by_address.pop(address, 0) - 1
        if count > 0:
            self.by_address[address] = count

    def refuse(self, transport: asyncio.BaseTransport, reason: str) -> None:
        self.refused += 1
        allowed, suppressed = self.refusals.allow()
        if allowed:
            event(
                "connections_capped",
                logging.WARNING,
                reason=reason,
                limit=self.limit,
                per_address=self.per_address,
                refused_before=suppressed or None,
            )
        assert isinstance(transport, asyncio.Transport)
        transport.write(_REFUSED)
        transport.close()
