"""From a merge plan to outbox items: what the sources can take, and what is ignored.

A change that cannot be written (read-only source, no write_to, deletes not allowed) is
dropped here and logged, never answered with an error the phone would retry forever; the
entry shows the upstream value again at the phone's next fetch.
"""

from __future__ import annotations

from gateway.compose import Rendered
from gateway.config import Config
from gateway.logs import event
from gateway.merge import Create, Plan, Update
from gateway.model import UserRef
from gateway.outbox_rows import Item, Kind
from gateway.sync import Sources


def outbox_items(
    plan: Plan, key: str, config: Config, user: UserRef, ours: Rendered, sources: Sources
) -> tuple[list[Item], int]:
    """(items to commit, how many changes were ignored)."""
    document = config.documents[key]
    items: list[Item] = []
    ignored = 0
    for change in plan.changes:
        kind: Kind
        if isinstance(change, Create):
            kind, entry_id, href, etag = "create", change.entry.entry_id, "", ""
            before, after, source = None, change.entry, document.write_to
            refused = None if source else "the document has no write_to"
        else:
            before = change.before
            origin = ours.origins[before.entry_id]
            entry_id, href, source, etag = (
                before.entry_id,
                origin.href,
                origin.source,
                origin.etag,
            )
            settings = config.sources[source]
            if isinstance(change, Update):
                kind, after = "update", change.after
                refused = "read_only source" if settings.read_only else None
            else:
                kind, after = "delete", None
                refused = None if settings.deletes_allowed else "deletes not allowed"
        if refused is not None or source is None:
            event(
                f"{kind}_ignored",
                document=key,
                user=user.xui,
                entry=entry_id,
                source=source,
                reason=refused,
            )
            ignored += 1
            continue
        items.append(
            Item(
                key,
                user.xui,
                source,
                _instance_user(sources, source, user),
                kind,
                entry_id,
                href,
                before,
                after,
                etag,
            )
        )
    return items, ignored


def _instance_user(sources: Sources, source: str, user: UserRef) -> str:
    return user.xui if sources.is_per_user(source) else ""
