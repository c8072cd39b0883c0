"""Failed-login rate limiting, per client address and per user name."""

from __future__ import annotations

import time
from collections import deque


class FailureLimiter:
    def __init__(self, max_failures: int, window: float) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        horizon = time.monotonic() - self.window
        while times and times[0] < horizon:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def blocked(self, *keys: str) -> float:
        """Seconds until any of `keys` may try again (0: allowed)."""
        wait = 0.0
        for key in keys:
            times = self._recent(key)
            if len(times) >= self.max_failures:
                wait = max(wait, times[0] + self.window - time.monotonic())
        return wait

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)
        if len(self._failures) > 100_000:  # an address scan: forget the oldest
            for key in list(self._failures)[: len(self._failures) // 2]:
                del self._failures[key]

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
