"""How many entries phones may create upstream: at most `max_creations_per_put` in one
PUT, and at most `max_creations_per_user` per user and document within `creation_window`
(a sliding window, kept in memory: a restart starts every window afresh).

An entry beyond a cap is kept out as one created in a document without `write_to` is:
not written, gone at the phone's next fetch. The PUT itself succeeds (the phone could do
nothing about a refusal but send it again), every other change it carries is applied, and
one `creations_capped` event per PUT says how many were kept out. Only creations are
capped: edits and deletes are the phone's own entries, bounded by the document.

The cap is applied to the merge's plan, before anything is committed or written, so the
entries kept out cost no card, outbox row or log line each. A window counts the entry_ids
it created: one created again (a create that failed and came back) does not count twice.
Windows that expired are dropped, so users who stopped creating cost no memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from gateway.config import DocumentConfig
from gateway.logs import event
from gateway.merge import Change, Create, Plan
from gateway.outbox_rows import Item

#: How often (seconds of the clock) every window is pruned, not only the one in use.
SWEEP_SECONDS = 60.0


@dataclass
class _Window:
    span: float  # seconds, as configured when last used
    created: dict[str, float] = field(default_factory=dict)  # entry_id -> when; oldest first

    def prune(self, now: float) -> None:
        while self.created:
            oldest = next(iter(self.created))
            if self.created[oldest] > now - self.span:
                return
            del self.created[oldest]


class CreationLimiter:
    """The creation caps of every (document, user), in memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._next_sweep = clock() + SWEEP_SECONDS

    def __len__(self) -> int:
        """How many (document, user) windows are kept."""
        return len(self._windows)

    def cap(self, key: str, document: DocumentConfig, user: str, plan: Plan) -> tuple[Plan, int]:
        """`plan` without the creations beyond the caps (in the body's order, the first
        ones are kept), and how many were kept out (logged once)."""
        if document.write_to is None:
            return plan, 0  # creations are kept out anyway, each logged (changeset)
        now = self._clock()
        self._sweep(now)
        window = self._window(key, user, document, now)
        left = max(0, document.max_creations_per_user - len(window.created))
        per_put = document.max_creations_per_put
        kept: list[Change] = []
        taken = out = 0
        scope: str | None = None  # the cap reached first: "put" or "user"
        for change in plan.changes:
            if isinstance(change, Create):
                again = change.entry.entry_id in window.created  # counted already
                if taken >= per_put or (left <= 0 and not again):
                    scope = scope or ("put" if taken >= per_put else "user")
                    out += 1
                    continue
                taken += 1
                left -= 0 if again else 1
            kept.append(change)
        if not out:
            return plan, 0
        event(
            "creations_capped",
            logging.WARNING,
            document=key,
            user=user,
            kept_out=out,
            created=taken,
            limit=per_put if scope == "put" else document.max_creations_per_user,
            scope=scope,
            window=document.creation_window if scope == "user" else None,
        )
        return replace(plan, changes=kept), out

    def created(self, key: str, document: DocumentConfig, user: str, items: Iterable[Item]) -> None:
        """Count the creations committed for `user` (after the commit: a PUT that failed
        created nothing)."""
        ids = [item.entry_id for item in items if item.kind == "create"]
        if not ids:
            return
        now = self._clock()
        window = self._windows.setdefault((key, user), _Window(document.creation_window))
        for entry_id in ids:
            window.created.setdefault(entry_id, now)

    def _window(self, key: str, user: str, document: DocumentConfig, now: float) -> _Window:
        window = self._windows.get((key, user))
        if window is None:
            return _Window(document.creation_window)  # kept once something is created
        window.span = document.creation_window
        window.prune(now)
        return window

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        for name, window in list(self._windows.items()):
            window.prune(now)
            if not window.created:
                del self._windows[name]
