"""The engine behind the front end: sources, composition and write-back for one config."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.compose import Composer, Rendered, etag_of, render_entries
from gateway.config import Config, DocumentConfig
from gateway.entry import Entry
from gateway.logs import event
from gateway.merge import diff_document, with_entry_ids
from gateway.model import UserRef
from gateway.store import FILE_NAME as STORE_FILE
from gateway.store import Store
from gateway.sync import Sources
from gateway.writeback import WriteBack


@dataclass(frozen=True)
class PutResult:
    etag: str
    outcomes: dict[str, int]


class Engine:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.sources = Sources(config)
        self.composer = Composer(self.sources)
        self.writeback = WriteBack(self.sources)
        self.store: Store | None = None

    async def start(self) -> None:
        """Open the state database and start syncing (render and tests may skip this)."""
        self.open_store()
        await self.sources.start(self.config.server.startup_sync_wait)

    def open_store(self) -> None:
        self.config.server.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.config.server.state_dir / STORE_FILE)
        self.sources.attach_store(self.store)

    async def stop(self) -> None:
        await self.sources.stop()
        if self.store is not None:
            self.store.close()

    def find_document(self, auid: str, name: str) -> tuple[str, DocumentConfig] | None:
        return self.config.document_at(auid, name)

    async def document(self, key: str, user: UserRef) -> Rendered:
        return await self.composer.document(key, self.config.documents[key], user)

    async def put(self, key: str, user: UserRef, theirs: list[Entry]) -> PutResult:
        """Apply a phone's whole document. The answer's ETag is the merged document's
        when the phone now holds exactly that, else one that differs from it, so the
        phone's next poll fetches what the merge added or reverted."""
        document = self.config.documents[key]
        ours = await self.document(key, user)
        theirs = with_entry_ids(theirs)
        changes = diff_document(ours.entries, theirs)
        outcomes = await self.writeback.apply(key, document, user, ours, changes)
        merged = await self.document(key, user)
        event("put", document=key, user=user.xui, entries=len(theirs), **dict(outcomes))
        held = {entry.entry_id: entry for entry in theirs}
        etag = merged.etag if held == dict(merged.entries) else etag_of(render_entries(held))
        return PutResult(etag, dict(outcomes))
