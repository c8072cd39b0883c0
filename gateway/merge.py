"""The three-way merge of a phone's PUT: pure functions over entries, no I/O.

base = the version the phone was served (its ancestor), theirs = what it sent,
ours = the document as composed now. The table in design.md, row by row:

| entry is in                 | action                                                      |
|-----------------------------|-------------------------------------------------------------|
| theirs only                 | create                                                      |
| base and ours, not theirs   | delete, if ours == base (else keep: changed upstream)       |
| base, theirs, ours; ≠ base  | apply the fields the phone changed; a field also changed    |
|                             | upstream is a conflict, settled by the policy               |
| ours only                   | keep: never delete what the phone never saw                 |
| base and theirs, not ours   | deleted upstream: stays deleted, unless the phone edited it |
|                             | (then the policy: phone-wins creates it again)              |

Number and email lists merge by value (the phone's additions and removals are applied to
the current list), so edits of one list on both sides are not conflicts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from gateway.entry import NUMBER_FIELDS, Entry, FieldValue, changed_fields

Policy = Literal["phone-wins", "upstream-wins"]
_ENTRY_ID = re.compile(r"[0-9A-F]{32}")


@dataclass(frozen=True)
class Create:
    entry: Entry


@dataclass(frozen=True)
class Update:
    before: Entry  # the entry as composed now (ours)
    after: Entry  # what it becomes


@dataclass(frozen=True)
class Delete:
    before: Entry


Change = Create | Update | Delete


@dataclass(frozen=True)
class Conflict:
    entry_id: str
    field: str  # "*" when the whole entry is in question (deleted upstream)
    theirs: FieldValue | None
    ours: FieldValue | None
    winner: Literal["phone", "upstream"]


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)


def new_entry_id() -> str:
    return os.urandom(16).hex().upper()


def with_entry_ids(
    theirs: Sequence[Entry],
    make_id: Callable[[], str] = new_entry_id,
    known: Mapping[str, Entry] | None = None,
) -> list[Entry]:
    """The phone's entries, each with a unique entry_id of 32 upper-case hex digits: an
    entry without one, with anything else (the phone's text is data, never a name), or
    repeating an earlier one, is a new entry and gets a fresh id (never dropped).

    An entry the phone made and sent before, which we recorded under the id we gave it
    (`known`: the phone's base), is sent again without that id until the phone fetches:
    such an entry, equal in everything but the id, takes its recorded id back instead of
    being created twice."""
    claimed = {e.entry_id.upper() for e in theirs if is_entry_id(e.entry_id.upper())}
    # Looked up by content, not searched: a body of thousands of entries without ids must
    # not cost a comparison with every entry the phone holds.
    unclaimed: dict[Hashable, list[Entry]] = {}
    for entry_id, entry in (known or {}).items():
        if entry_id not in claimed:
            unclaimed.setdefault(_content(entry), []).append(entry)
    seen: set[str] = set()
    result = []
    for entry in theirs:
        entry_id = entry.entry_id.upper()
        if not is_entry_id(entry_id) or entry_id in seen:
            twins = unclaimed.get(_content(entry))
            entry_id = twins.pop(0).entry_id if twins else make_id()
        seen.add(entry_id)
        result.append(replace(entry, entry_id=entry_id))
    return result


def _content(entry: Entry) -> Hashable:
    """What an entry is but for its id: equal for entries equal in everything else."""
    return entry.display_name, frozenset(entry.fields.items())


def is_entry_id(text: str) -> bool:
    return _ENTRY_ID.fullmatch(text) is not None


def merge(
    base: Mapping[str, Entry] | None,
    theirs: Sequence[Entry],
    ours: Mapping[str, Entry],
    policy: Policy = "phone-wins",
) -> Plan:
    """What to do upstream so that nothing the phone changed is lost (unless a logged
    conflict decided otherwise) and nothing the phone never saw is deleted.

    `base` None: the version the phone edited is not known (never served to it, state
    lost, an ETag never issued). Then nothing is deleted: an entry missing from the body
    may just be one the phone never got. Additions and field edits still apply by
    entry_id, an edit against the current entry settled by the policy."""
    plan = Plan()
    base = base if base is not None else {}  # deletes only what a known base had
    their_ids = set()
    for entry in theirs:
        their_ids.add(entry.entry_id)
        before, now = base.get(entry.entry_id), ours.get(entry.entry_id)
        if before is None and now is None:
            plan.changes.append(Create(entry))
        elif before is None:
            assert now is not None
            _unknown_ancestor(plan, entry, now, policy)
        elif now is None:
            _deleted_upstream(plan, before, entry, policy)
        elif changed_fields(before, entry):
            _edited(plan, before, entry, now, policy)
    for entry_id, before in base.items():
        now = ours.get(entry_id)
        if entry_id not in their_ids and now is not None and not changed_fields(before, now):
            plan.changes.append(Delete(now))
    return plan


def _edited(plan: Plan, before: Entry, theirs: Entry, ours: Entry, policy: Policy) -> None:
    upstream = changed_fields(before, ours)
    values: dict[str, FieldValue] = {}
    for name in changed_fields(before, theirs):
        if name in NUMBER_FIELDS:
            values[name] = _merge_list(before.get(name), theirs.get(name), ours.get(name))
        elif name in upstream and theirs.get(name) != ours.get(name):
            winner: Literal["phone", "upstream"] = "phone" if policy == "phone-wins" else "upstream"
            plan.conflicts.append(
                Conflict(ours.entry_id, name, theirs.get(name), ours.get(name), winner)
            )
            if winner == "phone":
                values[name] = theirs.get(name)
        else:
            values[name] = theirs.get(name)
    after = _with_fields(ours, values)
    if changed_fields(ours, after):
        plan.changes.append(Update(ours, after))


def _unknown_ancestor(plan: Plan, theirs: Entry, ours: Entry, policy: Policy) -> None:
    # The phone has an entry we never served it (another device created it, or the base
    # was lost): both sides are versions of it with no common ancestor.
    if not changed_fields(ours, theirs):
        return
    winner: Literal["phone", "upstream"] = "phone" if policy == "phone-wins" else "upstream"
    for name in sorted(changed_fields(ours, theirs)):
        plan.conflicts.append(
            Conflict(ours.entry_id, name, theirs.get(name), ours.get(name), winner)
        )
    if winner == "phone":
        plan.changes.append(Update(ours, theirs))


def _deleted_upstream(plan: Plan, before: Entry, theirs: Entry, policy: Policy) -> None:
    if not edited_fields(before, theirs):
        # Not resurrected: the phone only still had it (or only reordered a number list,
        # which merges by value and so is no edit).
        return
    winner: Literal["phone", "upstream"] = "phone" if policy == "phone-wins" else "upstream"
    plan.conflicts.append(Conflict(theirs.entry_id, "*", "edited", "deleted", winner))
    if winner == "phone":
        plan.changes.append(Create(theirs))


def edited_fields(before: Entry, after: Entry) -> set[str]:
    """The fields the phone changed, as the merge counts them: a number list reordered
    but holding the same values is unchanged (lists merge by value)."""
    return {
        name
        for name in changed_fields(before, after)
        if name not in NUMBER_FIELDS
        or set(_as_list(before.get(name))) != set(_as_list(after.get(name)))
    }


def _merge_list(base: FieldValue, theirs: FieldValue, ours: FieldValue) -> FieldValue:
    """ours, with what the phone removed taken out and what it added put in."""
    was, now, current = _as_list(base), _as_list(theirs), _as_list(ours)
    removed = [v for v in was if v not in now]
    added = [v for v in now if v not in was and v not in current]
    return tuple([v for v in current if v not in removed] + added)


def _as_list(value: FieldValue) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    return list(value)


def _with_fields(entry: Entry, values: Mapping[str, FieldValue]) -> Entry:
    display_name = str(values.get("display_name", entry.display_name))
    fields = {**entry.fields, **{k: v for k, v in values.items() if k != "display_name"}}
    return Entry(entry.entry_id, display_name, {k: v for k, v in fields.items() if v})


def rebase(
    before: Entry, after: Entry, upstream: Entry, policy: Policy = "phone-wins"
) -> tuple[Entry, list[Conflict]]:
    """The phone's change (`before` -> `after`), merged when upstream was `before`, made
    again now that upstream is `upstream`. A field the phone changed that upstream also
    changed, to another value, is a conflict: phone-wins keeps the phone's value,
    upstream-wins takes the field out of the change. Number lists merge by value (the
    change applies the phone's additions and removals), so they never conflict.
    Returns the `after` to apply with `before`, and the conflicts."""
    upstream_changed = changed_fields(before, upstream)
    winner: Literal["phone", "upstream"] = "phone" if policy == "phone-wins" else "upstream"
    conflicts: list[Conflict] = []
    keep_before: dict[str, FieldValue] = {}
    for name in sorted(changed_fields(before, after)):
        if name in NUMBER_FIELDS or name not in upstream_changed:
            continue
        if after.get(name) == upstream.get(name):
            continue  # both made the same change
        conflicts.append(
            Conflict(after.entry_id, name, after.get(name), upstream.get(name), winner)
        )
        if winner == "upstream":
            keep_before[name] = before.get(name)
    return _with_fields(after, keep_before), conflicts
