"""Failed-login rate limiting in three scopes: one address and user name together
(`max_failures`), one user name from every address (`max_failures_per_user`), and one
address for every name (`max_failures_per_address`, highest: a NAT or a reverse proxy
carries many users).

An attempt is counted from before its password check: `begin` admits it only while the
failures plus the attempts still in flight stay under every limit, so a burst of
concurrent logins cannot all pass the check before the first failure is counted. An
attempt that would reach a limit only through attempts in flight waits for them to end
(they may succeed) instead of being refused; one refused by failures alone gets the wait.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from dataclasses import dataclass, field

Key = tuple[str, ...]
#: Past this many keys, expired ones are swept, then records that block nobody (oldest
#: first) until half are left. A record that blocks stays: else a flood of made-up names
#: would lift the block on the one being guessed.
MAX_KEYS = 100_000
#: Past this many even blocking records go, oldest first: memory has a bound.
HARD_MAX_KEYS = 4 * MAX_KEYS
#: A user name longer than this is counted by its hash (names are the client's choice).
MAX_NAME = 64


def user_key(name: str) -> str:
    """The name failures are counted under: one key for every spelling a directory takes
    as the same name (LDAP compares uid without case and outer spaces), bounded in size."""
    folded = name.strip().casefold()
    if len(folded) > MAX_NAME:
        digest = hashlib.sha256(folded.encode("utf-8", "surrogatepass")).hexdigest()
        return f"#{digest[:32]}"
    return folded


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=deque)
    in_flight: int = 0


class Attempt:
    """One admitted login attempt: end it with exactly one of `failed`, `succeeded` or
    `abandoned` (neither: an outage, a stale nonce, a malformed request)."""

    def __init__(self, limiter: FailureLimiter, keys: list[Key]) -> None:
        self._limiter = limiter
        self._keys = keys
        self._open = True

    def failed(self) -> None:
        if self._open:
            self._open = False
            self._limiter._end(self._keys, failed=True)

    def succeeded(self) -> None:
        if self._open:
            self._open = False
            self._limiter._end(self._keys, failed=False)
            # The pair's own earlier mistakes are forgiven; the per-user and per-address
            # counts are not, or a user logging in would reset a guesser's count.
            if len(self._keys) == 3:
                self._limiter._forget(self._keys[2])

    def abandoned(self) -> None:
        if self._open:
            self._open = False
            self._limiter._end(self._keys, failed=False)


class FailureLimiter:
    def __init__(
        self,
        window: float,
        max_failures: int,
        max_per_user: int | None = None,
        max_per_address: int | None = None,
    ) -> None:
        self.configure(window, max_failures, max_per_user, max_per_address)
        self._records: dict[Key, _Record] = {}
        self._changed: asyncio.Event | None = None
        self._sweep_at = MAX_KEYS

    def configure(
        self,
        window: float,
        max_failures: int,
        max_per_user: int | None = None,
        max_per_address: int | None = None,
    ) -> None:
        self.window = window
        self._limits = {
            "pair": max_failures,
            "user": max_per_user or max_failures,
            "addr": max_per_address or max_failures,
        }

    @staticmethod
    def _keys(address: str, user: str | None) -> list[Key]:
        if user is None:
            return [("addr", address)]
        name = user_key(user)
        return [("addr", address), ("user", name), ("pair", address, name)]

    def _failures(self, key: Key) -> int:
        record = self._records.get(key)
        if record is None:
            return 0
        horizon = time.monotonic() - self.window
        while record.failures and record.failures[0] < horizon:
            record.failures.popleft()
        if not record.failures and not record.in_flight:
            del self._records[key]
        return len(record.failures)

    def _wait(self, key: Key) -> float:
        record = self._records[key]
        return max(0.0, record.failures[0] + self.window - time.monotonic())

    def blocked(self, address: str, user: str | None = None) -> float:
        """Seconds until failures alone stop blocking `address` (and `user` there): 0 if
        they do not."""
        wait = 0.0
        for key in self._keys(address, user):
            if self._failures(key) >= self._limits[key[0]]:
                wait = max(wait, self._wait(key))
        return wait

    async def begin(self, address: str, user: str | None) -> Attempt | float:
        """An Attempt counted as in flight, or the seconds to wait (blocked)."""
        keys = self._keys(address, user)
        while True:
            if wait := self.blocked(address, user):
                return wait
            if all(
                self._failures(key) + self._in_flight(key) < self._limits[key[0]] for key in keys
            ):
                break
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
        for key in keys:
            self._records.setdefault(key, _Record()).in_flight += 1
        return Attempt(self, keys)

    def _in_flight(self, key: Key) -> int:
        record = self._records.get(key)
        return record.in_flight if record is not None else 0

    def _end(self, keys: list[Key], failed: bool) -> None:
        now = time.monotonic()
        for key in keys:
            record = self._records.setdefault(key, _Record())
            record.in_flight = max(0, record.in_flight - 1)
            if failed:
                record.failures.append(now)
            elif not record.failures and not record.in_flight:
                del self._records[key]
        if self._changed is not None:  # wake the attempts waiting on these
            self._changed.set()
            self._changed = None
        if failed and len(self._records) > self._sweep_at:
            self._sweep()

    def _forget(self, key: Key) -> None:
        record = self._records.get(key)
        if record is not None:
            record.failures.clear()
            if not record.in_flight:
                del self._records[key]

    def _sweep(self) -> None:
        """An address or name scan: drop what has expired, then records that block nobody,
        oldest first, down to half of MAX_KEYS; blocking ones only past HARD_MAX_KEYS.
        The next sweep waits until the table has grown by half, so sweeping stays
        amortized."""
        for key in list(self._records):
            self._failures(key)
        for blocking in (False, True):
            target = MAX_KEYS // 2 if not blocking else HARD_MAX_KEYS
            for key, record in list(self._records.items()):
                if len(self._records) <= target:
                    break
                if record.in_flight:
                    continue
                if blocking or len(record.failures) < self._limits[key[0]]:
                    del self._records[key]
        self._sweep_at = max(MAX_KEYS, len(self._records) + len(self._records) // 2)
