"""What one entry of a PUT may change: a display name of at most MAX_DISPLAY_NAME
characters, and props whose names and values together come to at most MAX_EDIT_TEXT.

Only what the phone changed counts. A field equal to the version the phone edited (or,
without one, to the document as it is) costs nothing, so a long note that came from the
directory goes back unchanged, never cut. A change beyond the budget is kept out: the
field keeps its earlier value (or stays absent), as an edit of a read-only source would.
No keypad types that much; the bound keeps every served document well inside
max_body_size, so one user cannot inflate a shared book until no phone can PUT it back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from gateway.entry import FIELD_ORDER, Entry, FieldValue
from gateway.logs import event

MAX_DISPLAY_NAME = 256
MAX_EDIT_TEXT = 2048


def bounded(
    theirs: Sequence[Entry],
    base: Mapping[str, Entry] | None,
    current: Mapping[str, Entry],
    document: str = "",
    user: str = "",
) -> list[Entry]:
    """`theirs` with every entry's changes held to the budget (logged once per PUT)."""
    kept_out = 0
    result = []
    for entry in theirs:
        before = (base or {}).get(entry.entry_id) or current.get(entry.entry_id)
        limited, out = _bounded_entry(entry, before)
        kept_out += out
        result.append(limited)
    if kept_out:
        event(
            "edits_kept_out",
            logging.WARNING,
            document=document,
            user=user,
            fields=kept_out,
            reason=f"over {MAX_EDIT_TEXT} characters changed in one entry",
        )
    return result


def _size(name: str, value: FieldValue) -> int:
    if isinstance(value, tuple):
        return sum(len(name) + len(item) for item in value)
    return len(name) + len(value)


def _bounded_entry(entry: Entry, before: Entry | None) -> tuple[Entry, int]:
    earlier = before.fields if before is not None else {}
    name = entry.display_name
    out = 0
    if len(name) > MAX_DISPLAY_NAME and (before is None or name != before.display_name):
        name = before.display_name if before is not None else name[:MAX_DISPLAY_NAME]
        out += 1
    ordered = [n for n in FIELD_ORDER if n in entry.fields]
    ordered += sorted(set(entry.fields) - set(FIELD_ORDER))
    fields: dict[str, FieldValue] = {}
    left = MAX_EDIT_TEXT
    for field_name in ordered:
        value = entry.fields[field_name]
        if earlier.get(field_name) == value:
            fields[field_name] = value  # unchanged: free
            continue
        cost = _size(field_name, value)
        if cost <= left:
            left -= cost
            fields[field_name] = value
            continue
        out += 1
        if field_name in earlier:
            fields[field_name] = earlier[field_name]  # the edit is kept out, not the field
    if not out:
        return entry, 0
    return Entry(entry.entry_id, name, fields), out
