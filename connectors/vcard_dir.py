"""`vcard-dir`: a folder of .vcf files (one or many cards each) as a source.

A card's href is its file name, or `file.vcf#UID` (`file.vcf#N` for a card without UID)
when the file holds several cards. Writes rewrite only the card that changed, keep the
rest of the file byte for byte, and replace the file atomically (temporary file + rename).
"""

from __future__ import annotations

import asyncio
import builtins
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from connectors.vcard import card_to_contact, new_card, write_contact
from connectors.vcard_lines import Card, split_cards
from gateway.connector import (
    AlreadyExists,
    ConfigPath,
    Connector,
    ConnectorSettings,
    NotFound,
    Unavailable,
    WrongEtag,
)
from gateway.model import Contact, UserRef

SUFFIX = ".vcf"


class VcardDirSettings(ConnectorSettings):
    path: ConfigPath
    #: vCard version of cards created from a phone.
    version: Literal["3.0", "4.0"] = "3.0"


@dataclass
class _File:
    """A parsed file, kept while its size and modification time stay the same."""

    stamp: tuple[int, int]
    segments: list[tuple[bool, str]]
    cards: dict[str, tuple[int, Card]]  # href -> (segment index, card)


class VcardDirConnector(Connector[VcardDirSettings]):
    settings_model = VcardDirSettings

    def __init__(
        self, source: str, settings: VcardDirSettings, user: UserRef | None = None
    ) -> None:
        super().__init__(source, settings, user)
        self.folder = settings.path
        self.version = settings.version
        self._files: dict[str, _File] = {}
        self._write_lock = threading.Lock()

    async def list(self) -> AsyncIterator[tuple[str, str]]:
        for href, etag in await asyncio.to_thread(self._scan):
            yield href, etag

    async def get(self, href: str) -> Contact:
        return await asyncio.to_thread(self._get, href)

    async def get_many(self, hrefs: Iterable[str]) -> builtins.list[Contact]:
        return await asyncio.to_thread(self._get_many, builtins.list(hrefs))

    async def create(self, contact: Contact) -> Contact:
        return await asyncio.to_thread(self._create, contact)

    async def update(self, href: str, contact: Contact, etag: str) -> Contact:
        return await asyncio.to_thread(self._update, href, contact, etag)

    async def delete(self, href: str, etag: str) -> None:
        await asyncio.to_thread(self._delete, href, etag)

    # --- blocking work, run in a worker thread -------------------------------------

    def _scan(self) -> builtins.list[tuple[str, str]]:
        try:
            names = sorted(
                entry.name
                for entry in os.scandir(self.folder)
                if entry.name.endswith(SUFFIX) and entry.is_file()
            )
        except FileNotFoundError:
            if self.user is not None:
                return []  # a per-user folder appears with the user's first contact
            raise Unavailable(f"folder {self.folder} does not exist") from None
        except OSError as exc:
            raise Unavailable(f"cannot read folder {self.folder}: {exc.strerror}") from exc
        self._files = {name: f for name, f in self._files.items() if name in names}
        listing: builtins.list[tuple[str, str]] = []
        for name in names:
            try:
                parsed = self._read(name)
            except NotFound:
                continue  # removed between the listing and the read
            listing.extend((href, card.etag()) for href, (_, card) in parsed.cards.items())
        return listing

    def _read(self, name: str) -> _File:
        path = self.folder / name
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            cached = self._files.get(name)
            if cached is not None and cached.stamp == stamp:
                return cached
            # newline="": keep CRLF as it is, so untouched cards are rewritten byte for byte.
            with path.open(encoding="utf-8-sig", newline="") as handle:
                text = handle.read()
        except UnicodeDecodeError as exc:
            raise Unavailable(f"{path} is not UTF-8 (byte {exc.start}): convert it") from exc
        except FileNotFoundError:
            raise NotFound(name) from None
        except OSError as exc:
            raise Unavailable(f"cannot read {path}: {exc.strerror}") from exc
        parsed = _parse_file(name, text, stamp)
        self._files[name] = parsed
        return parsed

    def _locate(self, href: str) -> tuple[str, _File, int, Card]:
        name = href.split("#", 1)[0]
        if "/" in name or "\\" in name or not name.endswith(SUFFIX) or name.startswith("."):
            raise NotFound(href)
        parsed = self._read(name)
        if href not in parsed.cards:
            raise NotFound(href)
        index, card = parsed.cards[href]
        return name, parsed, index, card

    def _get(self, href: str) -> Contact:
        *_, card = self._locate(href)
        return card_to_contact(card, self.source, href)

    def _get_many(self, hrefs: builtins.list[str]) -> builtins.list[Contact]:
        found = []
        for href in hrefs:
            try:
                found.append(self._get(href))
            except NotFound:
                continue
        return found

    def _create(self, contact: Contact) -> Contact:
        # The file is named after the entry_id, so a create retried after a crash
        # finds its own earlier result instead of writing a second card.
        stem = contact.entry_id or os.urandom(16).hex().upper()
        name = f"{stem}{SUFFIX}"
        card = new_card(contact, self.version)
        with self._write_lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            target = self.folder / name
            temporary = self._write_temporary(card.text())
            try:
                os.link(temporary, target)
            except FileExistsError:
                raise AlreadyExists(name) from None
            except OSError as exc:
                raise Unavailable(f"cannot write {target}: {exc.strerror}") from exc
            finally:
                os.unlink(temporary)
        return self._get(name)

    def _update(self, href: str, contact: Contact, etag: str) -> Contact:
        with self._write_lock:
            name, parsed, index, card = self._locate(href)
            if card.etag() != etag:
                raise WrongEtag(href)
            changed = write_contact(card, contact)
            segments = list(parsed.segments)
            segments[index] = (True, changed.text())
            self._replace(name, segments)
        return self._get(href)

    def _delete(self, href: str, etag: str) -> None:
        with self._write_lock:
            name, parsed, index, card = self._locate(href)
            if card.etag() != etag:
                raise WrongEtag(href)
            segments = [s for i, s in enumerate(parsed.segments) if i != index]
            if any(is_card for is_card, _ in segments):
                self._replace(name, segments)
            else:
                try:
                    (self.folder / name).unlink()
                except OSError as exc:
                    raise Unavailable(f"cannot remove {name}: {exc.strerror}") from exc
            self._files.pop(name, None)

    def _replace(self, name: str, segments: builtins.list[tuple[bool, str]]) -> None:
        temporary = self._write_temporary("".join(text for _, text in segments))
        try:
            os.replace(temporary, self.folder / name)
        except OSError as exc:
            os.unlink(temporary)
            raise Unavailable(f"cannot write {name}: {exc.strerror}") from exc
        self._files.pop(name, None)

    def _write_temporary(self, text: str) -> Path:
        try:
            fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise Unavailable(f"cannot write in {self.folder}: {exc.strerror}") from exc
        return Path(temporary)


def _parse_file(name: str, text: str, stamp: tuple[int, int]) -> _File:
    segments = split_cards(text)
    cards = [(i, Card.parse(t)) for i, (is_card, t) in enumerate(segments) if is_card]
    indexed: dict[str, tuple[int, Card]] = {}
    anonymous = 0
    for index, card in cards:
        href = name if len(cards) == 1 else f"{name}#{card.uid}"
        if len(cards) > 1 and (not card.uid or href in indexed):
            # Numbered among the cards without a (unique) UID only, so removing a card
            # that has one does not renumber the others.
            href = f"{name}#{anonymous}"
            anonymous += 1
        indexed[href] = (index, card)
    return _File(stamp, segments, indexed)
