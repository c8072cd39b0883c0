"""From a merge plan to outbox items: what the sources can take, and what is ignored.

A change that cannot be written (read-only source, no write_to, deletes not allowed) is
dropped here and logged, never answered with an error the phone would retry forever; the
entry shows the upstream value again at the phone's next fetch.
"""

from __future__ import annotations

from gateway.compose import Rendered
from gateway.config import Config
from gateway.logs import event
from gateway.merge import Create, Delete, Plan, Update
from gateway.model import UserRef
from gateway.outbox import Item
from gateway.sync import Sources


def outbox_items(
    plan: Plan, key: str, config: Config, user: UserRef, ours: Rendered, sources: Sources
) -> tuple[list[Item], int]:
    """(items to commit, how many changes were ignored)."""
    document = config.documents[key]
    items: list[Item] = []
    ignored = 0
    for change in plan.changes:
        if isinstance(change, Create):
            entry_id = change.entry.entry_id
            target = document.write_to
            if target is None:
                event(
                    "create_ignored",
                    document=key,
                    user=user.xui,
                    entry=entry_id,
                    reason="the document has no write_to",
                )
                ignored += 1
                continue
            items.append(
                Item(
                    key,
                    user.xui,
                    target,
                    _instance_user(sources, target, user),
                    "create",
                    entry_id,
                    after=change.entry,
                )
            )
            continue
        before = change.before
        origin = ours.origins[before.entry_id]
        source = config.sources[origin.source]
        instance_user = _instance_user(sources, origin.source, user)
        if isinstance(change, Update):
            if source.read_only:
                event(
                    "edit_ignored",
                    document=key,
                    user=user.xui,
                    entry=before.entry_id,
                    source=origin.source,
                    reason="read_only source",
                )
                ignored += 1
                continue
            items.append(
                Item(
                    key,
                    user.xui,
                    origin.source,
                    instance_user,
                    "update",
                    before.entry_id,
                    origin.href,
                    before,
                    change.after,
                )
            )
        elif isinstance(change, Delete):
            if not source.deletes_allowed:
                event(
                    "delete_ignored",
                    document=key,
                    user=user.xui,
                    entry=before.entry_id,
                    source=origin.source,
                    reason="deletes not allowed",
                )
                ignored += 1
                continue
            items.append(
                Item(
                    key,
                    user.xui,
                    origin.source,
                    instance_user,
                    "delete",
                    before.entry_id,
                    origin.href,
                    before,
                )
            )
    return items, ignored


def _instance_user(sources: Sources, source: str, user: UserRef) -> str:
    return user.xui if sources.is_per_user(source) else ""
