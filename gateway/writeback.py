"""Applying a phone's changes to the sources, with the capability and policy checks.

Today changes are applied while the PUT waits; the durable outbox takes this place
later, keeping the same per-change rules.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from gateway.compose import Origin, Rendered
from gateway.config import DocumentConfig
from gateway.connector import AlreadyExists, ConnectorError, NotFound, WrongEtag
from gateway.entry import apply_entry
from gateway.logs import event
from gateway.merge import Change, Create, Update
from gateway.model import Contact, UserRef
from gateway.numbers import NumberFormat
from gateway.sync import Sources

#: How often an update is re-read and re-applied when upstream changed under it.
UPDATE_ATTEMPTS = 3


class WriteBack:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    async def apply(
        self,
        key: str,
        document: DocumentConfig,
        user: UserRef,
        rendered: Rendered,
        changes: Sequence[Change],
    ) -> Counter[str]:
        """Apply what can be applied; return counts by outcome (created, updated, …)."""
        outcomes: Counter[str] = Counter()
        for change in changes:
            entry_id = _entry_id(change)
            context = {"document": key, "user": user.xui, "entry": entry_id}
            try:
                if isinstance(change, Create):
                    outcome = await self._create(document, user, change, context, rendered.numbers)
                else:
                    origin = rendered.origins[entry_id]
                    if isinstance(change, Update):
                        outcome = await self._update(
                            origin, user, change, context, rendered.numbers
                        )
                    else:
                        outcome = await self._delete(origin, user, context)
            except ConnectorError as exc:
                event(
                    "write_failed",
                    logging.ERROR,
                    **context,
                    change=type(change).__name__.lower(),
                    error=type(exc).__name__,
                    detail=str(exc),
                )
                outcome = "failed"
            outcomes[outcome] += 1
        return outcomes

    async def _create(
        self,
        document: DocumentConfig,
        user: UserRef,
        change: Create,
        context: dict[str, str],
        numbers: NumberFormat,
    ) -> str:
        if document.write_to is None:
            event("create_ignored", logging.WARNING, **context, reason="document has no write_to")
            return "ignored"
        state = self.sources.state(document.write_to, user)
        contact = apply_entry(
            Contact(uid="", source=state.name, entry_id=change.entry.entry_id),
            None,
            change.entry,
            state.config.category,
            numbers,
        )
        async with state.lock:
            try:
                stored = await state.connector.create(contact)
            except AlreadyExists:
                # A retried create: the first one landed; the next sync shows it.
                event("create_exists", **context, source=state.name)
                return "created"
            await state.stored(stored)
        event("created", **context, source=state.name, href=stored.href)
        return "created"

    async def _update(
        self,
        origin: Origin,
        user: UserRef,
        change: Update,
        context: dict[str, str],
        numbers: NumberFormat,
    ) -> str:
        state = self.sources.state(origin.source, user)
        if state.config.read_only:
            event("edit_ignored", **context, source=state.name, reason="read_only source")
            return "ignored"
        async with state.lock:
            for _ in range(UPDATE_ATTEMPTS):
                current = state.contacts.get(origin.href)
                if current is None:
                    event("edit_ignored", **context, source=state.name, reason="deleted upstream")
                    return "ignored"
                wanted = apply_entry(
                    current, change.before, change.after, state.config.category, numbers
                )
                if wanted.same_content(current):
                    return "unchanged"
                try:
                    stored = await state.connector.update(origin.href, wanted, current.etag)
                except WrongEtag:
                    # Changed upstream meanwhile: apply the phone's fields to the new version.
                    try:
                        await state.stored(await state.connector.get(origin.href))
                    except NotFound:
                        await state.removed(origin.href)
                    continue
                except NotFound:
                    await state.removed(origin.href)
                    continue
                await state.stored(stored)
                event("updated", **context, source=state.name, href=origin.href)
                return "updated"
        event(
            "write_failed",
            logging.ERROR,
            **context,
            source=state.name,
            detail=f"upstream kept changing after {UPDATE_ATTEMPTS} attempts",
        )
        return "failed"

    async def _delete(self, origin: Origin, user: UserRef, context: dict[str, str]) -> str:
        state = self.sources.state(origin.source, user)
        if not state.config.deletes_allowed:
            event("delete_ignored", **context, source=state.name, reason="deletes not allowed")
            return "ignored"
        async with state.lock:
            current = state.contacts.get(origin.href)
            if current is None:
                return "deleted"
            try:
                await state.connector.delete(origin.href, current.etag)
            except NotFound:
                pass
            except WrongEtag:
                # Edited upstream since the phone saw it: keep the newer version.
                event("delete_ignored", **context, source=state.name, reason="changed upstream")
                return "ignored"
            await state.removed(origin.href)
        event("deleted", **context, source=state.name, href=origin.href)
        return "deleted"


def _entry_id(change: Change) -> str:
    return change.entry.entry_id if isinstance(change, Create) else change.before.entry_id
