"""Applying one of a phone's changes to its source: conditional writes, merged again when
upstream changed since the PUT was merged.

An outbox item carries the upstream ETag of the contact the merge compared against. When
the contact's ETag differs now (someone edited it upstream meanwhile, or the connector's
conditional write says so), the phone's change is merged again against the new version
(`merge.rebase`): a field changed on both sides is a conflict settled by the document's
policy, and a delete of an entry edited upstream is not carried out. Nothing is
overwritten or deleted blindly.

Every step is idempotent, so a change applied again after a crash lands once: a create
finds its own earlier result (AlreadyExists), an update finds nothing left to change, a
delete finds the entry gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from gateway.connector import AlreadyExists, ConnectorError, NotFound, WrongEtag
from gateway.entry import Entry, apply_entry, changed_fields, contact_to_entry
from gateway.logs import event
from gateway.merge import Conflict, Policy, rebase
from gateway.model import Contact
from gateway.numbers import NumberFormat
from gateway.outbox_rows import Item
from gateway.source_state import SourceState

Outcome = Literal["applied", "unchanged", "gone", "retry"]
OnConflict = Callable[[Item, Conflict], None]
#: How often an update is re-read and re-applied when upstream changed under it.
UPDATE_ATTEMPTS = 3


async def apply_change(
    state: SourceState,
    item: Item,
    numbers: NumberFormat,
    policy: Policy,
    on_conflict: OnConflict,
) -> Outcome:
    if item.kind == "create":
        assert item.after is not None
        return await create(state, item, item.after, numbers, on_conflict)
    assert item.before is not None
    if item.kind == "update":
        assert item.after is not None
        return await update(state, item, numbers, policy, on_conflict)
    return await delete(state, item, numbers, on_conflict)


def find_href(state: SourceState, href: str, entry_id: str) -> str | None:
    """Where the entry is now: its href, or (for one created from a phone, whose href was
    not known when the change was queued, or one moved upstream: an LDAP rename keeps the
    uid) the contact phones know by its entry_id."""
    if href and href in state.contacts:
        return href
    return state.href_of(entry_id)


async def create(
    state: SourceState, item: Item, entry: Entry, numbers: NumberFormat, on_conflict: OnConflict
) -> Outcome:
    """Create `entry` (of `item`) in `state`'s source, once."""
    context = item.context()
    if (found := find_href(state, "", entry.entry_id)) is not None:
        current = state.contacts[found]
        if current.entry_id.upper() == entry.entry_id:
            # Our own create, landed before a restart: edits made upstream since stay.
            return "applied"
        # A phone re-created an upstream entry whose delete was refused meanwhile (edited
        # upstream): one entry, with the phone's fields, as phone-wins re-creates it.
        wanted = apply_entry(current, None, entry, state.config.category, numbers)
        if wanted.same_content(current):
            return "applied"
        on_conflict(item, Conflict(entry.entry_id, "*", "re-created", "still upstream", "phone"))
        async with state.lock:
            try:
                await state.stored(await state.connector.update(found, wanted, current.etag))
            except (WrongEtag, NotFound):
                await _reread(state, found)
                return "retry"
        event("updated", **context, source=state.name, href=found)
        return "applied"
    contact = apply_entry(
        Contact(uid="", source=state.name, entry_id=entry.entry_id),
        None,
        entry,
        state.config.category,
        numbers,
    )
    async with state.lock:
        try:
            stored = await state.connector.create(contact)
        except AlreadyExists as exists:
            event("create_exists", **context, source=state.name)
            # An earlier try landed (before a crash, or its answer was lost): take the
            # contact into the snapshot now, or the phones lose it until the next sync.
            if exists.href is not None:
                try:
                    landed = await state.connector.get(exists.href)
                except ConnectorError:
                    return "applied"  # the next sync brings it
                # Only a card that says it is this entry's: a phone-chosen id may name
                # someone else's card, which must not change hands (or ids).
                if landed.entry_id == entry.entry_id:
                    await state.stored(landed)
                else:
                    event(
                        "create_clash",
                        logging.WARNING,
                        **context,
                        source=state.name,
                        href=exists.href,
                        detail="the entry's id names another contact; not created",
                    )
            return "applied"
        # The phone's id stays the entry's id, also where the upstream cannot keep it.
        await state.stored(stored if stored.entry_id else stored.replace(entry_id=entry.entry_id))
    event("created", **context, source=state.name, href=stored.href)
    return "applied"


def _as_entry(state: SourceState, contact: Contact, numbers: NumberFormat) -> Entry:
    return contact_to_entry(contact, state.config.category, numbers)


async def update(
    state: SourceState,
    item: Item,
    numbers: NumberFormat,
    policy: Policy,
    on_conflict: OnConflict,
) -> Outcome:
    assert item.before is not None and item.after is not None
    context = item.context()
    async with state.lock:
        for _ in range(UPDATE_ATTEMPTS):
            found = find_href(state, item.href, item.entry_id)
            if found is None:
                return "gone"
            current = state.contacts[found]
            after = item.after
            if item.etag and current.etag != item.etag:
                # Changed upstream since the merge: merge the phone's change again.
                upstream = _as_entry(state, current, numbers)
                after, conflicts = rebase(item.before, item.after, upstream, policy)
                for conflict in conflicts:
                    on_conflict(item, conflict)
            wanted = apply_entry(current, item.before, after, state.config.category, numbers)
            if wanted.same_content(current):
                return "unchanged"
            try:
                stored = await state.connector.update(found, wanted, current.etag)
            except WrongEtag:
                # Changed upstream between our read and the write: read it again.
                await _reread(state, found)
                continue
            except NotFound:
                await state.removed(found)
                continue
            await state.stored(stored)
            event("updated", **context, source=state.name, href=found)
            return "applied"
    event(
        "write_deferred",
        logging.WARNING,
        **context,
        source=state.name,
        detail=f"upstream kept changing during {UPDATE_ATTEMPTS} attempts",
    )
    return "retry"


async def delete(
    state: SourceState, item: Item, numbers: NumberFormat, on_conflict: OnConflict
) -> Outcome:
    assert item.before is not None
    context = item.context()
    async with state.lock:
        found = find_href(state, item.href, item.entry_id)
        if found is None:
            return "gone"
        current = state.contacts[found]
        if item.etag and current.etag != item.etag:
            upstream = _as_entry(state, current, numbers)
            if changed_fields(item.before, upstream):
                # Edited upstream after the phone's view: the newer version stays (the
                # merge keeps an entry changed upstream, whatever the policy).
                on_conflict(item, Conflict(item.entry_id, "*", "deleted", "edited", "upstream"))
                return "unchanged"
        try:
            await state.connector.delete(found, current.etag)
        except NotFound:
            pass
        except WrongEtag:
            # Edited upstream since the phone saw it: keep the newer version.
            event("delete_ignored", **context, source=state.name, reason="changed upstream")
            return "unchanged"
        await state.removed(found)
    event("deleted", **context, source=state.name, href=found)
    return "applied"


async def _reread(state: SourceState, href: str) -> None:
    """Take the contact at `href` as it is upstream now (gone, if it is)."""
    try:
        await state.stored(await state.connector.get(href))
    except NotFound:
        await state.removed(href)
