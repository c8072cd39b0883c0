"""Recent conflicts and refused edits, for the console's Conflicts page.

The gateway keeps no table of them: the merge and the outbox log each one as an event.
A logging handler on the gateway's logger keeps the newest in memory, from the moment the
console starts, at the level logging is configured for (`*_ignored` are INFO events: a
console under `level = "warning"` lists conflicts and failed writes only)."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from gateway.logs import log

#: Events the page lists, and what each means to an administrator.
KINDS = {
    "conflict": "conflict",
    "update_ignored": "edit refused",
    "delete_ignored": "delete refused",
    "create_ignored": "new entry refused",
    "edits_kept_out": "edit cut short",
    "creations_capped": "new entries capped",
    "write_failed": "write-back failed",
}
#: Events kept at most (the oldest go first).
KEPT = 500


@dataclass(frozen=True)
class Happening:
    at: float
    event: str
    fields: dict[str, Any]

    @property
    def kind(self) -> str:
        return KINDS.get(self.event, self.event)


class RecentEvents(logging.Handler):
    """The newest conflict and refused-edit events, newest last."""

    def __init__(self, kept: int = KEPT) -> None:
        super().__init__(logging.DEBUG)
        self.events: deque[Happening] = deque(maxlen=kept)

    def emit(self, record: logging.LogRecord) -> None:
        name = getattr(record, "event", None)
        if name in KINDS:
            fields = getattr(record, "fields", None)
            self.events.append(
                Happening(record.created, name, dict(fields) if isinstance(fields, dict) else {})
            )

    def attach(self) -> None:
        log.addHandler(self)

    def detach(self) -> None:
        log.removeHandler(self)

    def newest(self, count: int = 200) -> list[Happening]:
        return list(self.events)[-count:][::-1]
