"""Applying one of a phone's changes to its source: the capability checks, and the
conditional write with re-read and re-apply when upstream changed meanwhile.

Every step is idempotent, so a change applied again after a crash lands once: a create
finds its own earlier result (AlreadyExists), an update finds nothing left to change, a
delete finds the entry gone.
"""

from __future__ import annotations

import logging
from typing import Literal

from gateway.connector import AlreadyExists, NotFound, WrongEtag
from gateway.entry import Entry, apply_entry
from gateway.logs import event
from gateway.model import Contact, effective_entry_id
from gateway.numbers import NumberFormat
from gateway.source_state import SourceState

Outcome = Literal["applied", "unchanged", "gone", "retry"]
#: How often an update is re-read and re-applied when upstream changed under it.
UPDATE_ATTEMPTS = 3


def find_href(state: SourceState, href: str, entry_id: str) -> str | None:
    """Where the entry is now: its href, or (for one created from a phone, whose href was
    not known when the change was queued) the contact carrying its entry_id."""
    if href and href in state.contacts:
        return href
    if not href:
        # Queued as a create: only a contact that stored the phone's entry_id can be it,
        # a plain string comparison (no hashing of every contact on each create).
        return next((c.href for c in state.contacts.values() if c.entry_id == entry_id), None)
    # Moved upstream (an LDAP rename keeps the uid, so the derived entry_id).
    return next(
        (c.href for c in state.contacts.values() if effective_entry_id(c) == entry_id), None
    )


async def create(
    state: SourceState, entry: Entry, numbers: NumberFormat, context: dict[str, str]
) -> Outcome:
    if find_href(state, "", entry.entry_id) is not None:
        return "applied"  # landed before a restart
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
        except AlreadyExists:
            event("create_exists", **context, source=state.name)
            return "applied"
        await state.stored(stored)
    event("created", **context, source=state.name, href=stored.href)
    return "applied"


async def update(
    state: SourceState,
    href: str,
    before: Entry,
    after: Entry,
    numbers: NumberFormat,
    context: dict[str, str],
) -> Outcome:
    async with state.lock:
        for _ in range(UPDATE_ATTEMPTS):
            found = find_href(state, href, after.entry_id)
            if found is None:
                return "gone"
            current = state.contacts[found]
            wanted = apply_entry(current, before, after, state.config.category, numbers)
            if wanted.same_content(current):
                return "unchanged"
            try:
                stored = await state.connector.update(found, wanted, current.etag)
            except WrongEtag:
                # Changed upstream meanwhile: apply the phone's fields to the new version.
                try:
                    await state.stored(await state.connector.get(found))
                except NotFound:
                    await state.removed(found)
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


async def delete(state: SourceState, href: str, entry_id: str, context: dict[str, str]) -> Outcome:
    async with state.lock:
        found = find_href(state, href, entry_id)
        if found is None:
            return "gone"
        current = state.contacts[found]
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
