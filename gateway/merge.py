"""What a phone's PUT changed: pure functions over entries, no I/O.

Today the base is the document as composed now (a two-way diff by entry_id); the
three-way merge against the version the phone was served replaces `diff_document`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from gateway.entry import Entry, changed_fields

_ENTRY_ID = re.compile(r"^[0-9A-F]{32}$")


@dataclass(frozen=True)
class Create:
    entry: Entry


@dataclass(frozen=True)
class Update:
    before: Entry
    after: Entry


@dataclass(frozen=True)
class Delete:
    before: Entry


Change = Create | Update | Delete


def new_entry_id() -> str:
    return os.urandom(16).hex().upper()


def with_entry_ids(
    theirs: Sequence[Entry], make_id: Callable[[], str] = new_entry_id
) -> list[Entry]:
    """The phone's entries, each with a unique entry_id: an entry without one, or
    repeating an earlier one, is a new entry and gets a fresh id (never dropped)."""
    seen: set[str] = set()
    result = []
    for entry in theirs:
        entry_id = (
            entry.entry_id.upper() if _ENTRY_ID.match(entry.entry_id.upper()) else entry.entry_id
        )
        if not entry_id or entry_id in seen:
            entry_id = make_id()
        seen.add(entry_id)
        result.append(replace(entry, entry_id=entry_id))
    return result


def diff_document(ours: Mapping[str, Entry], theirs: Sequence[Entry]) -> list[Change]:
    """Creates, updates and deletes that turn `ours` into `theirs` (ids already unique)."""
    changes: list[Change] = []
    their_ids = set()
    for entry in theirs:
        their_ids.add(entry.entry_id)
        before = ours.get(entry.entry_id)
        if before is None:
            changes.append(Create(entry))
        elif changed_fields(before, entry):
            changes.append(Update(before, entry))
    changes.extend(Delete(before) for entry_id, before in ours.items() if entry_id not in their_ids)
    return changes
