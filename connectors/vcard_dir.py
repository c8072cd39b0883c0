"""`vcard-dir`: a folder of .vcf files (one or many cards each) as a source.

A card's href is its file name, or `file.vcf#UID` (`file.vcf#N` for a card without UID)
when the file holds several cards. Writes rewrite only the card that changed, keep the
rest of the file byte for byte, and replace the file atomically and durably: a temporary
file in the folder, fsynced, renamed over (or linked to) the card, then the folder fsynced.
A rewritten file keeps its mode and owner; a new one gets the mode any program's new file
gets (0666 less the umask), like the cards other tools put in the folder.

A folder that is not there (a dropped mount, a folder moved away during a restore) is
Unavailable, so changes wait for it: its cards are not "deleted", and a new card is not
written into a folder made in its place. Only a per-user source creates its own folder,
with the user's first contact.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import stat
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from connectors.vcard import card_to_contact, for_new_card, new_card, write_contact
from connectors.vcard_lines import Card, split_cards
from gateway.connector import (
    AlreadyExists,
    ConfigPath,
    Connector,
    ConnectorSettings,
    NotFound,
    Unavailable,
    WrongEtag,
    event,
)
from gateway.model import Contact, UserRef

SUFFIX = ".vcf"
#: New files: the kernel takes the umask off, as for a file any editor creates.
_NEW_FILE_MODE = 0o666


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
            self._check_folder()  # no folder is not "no card": that would lose changes
            raise NotFound(name) from None
        except OSError as exc:
            raise Unavailable(f"cannot read {path}: {exc.strerror}") from exc
        parsed = _parse_file(name, text, stamp)
        self._files[name] = parsed
        return parsed

    def _check_folder(self) -> None:
        """Unavailable unless the folder is there (a missing card in a missing folder may
        come back with the folder: its changes are retried, not dropped)."""
        try:
            is_folder = self.folder.is_dir()
        except OSError as exc:
            raise Unavailable(f"cannot read folder {self.folder}: {exc.strerror}") from exc
        if not is_folder:
            raise Unavailable(f"folder {self.folder} does not exist")

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
        # The file is named after the entry_id (made safe: a phone's text never becomes
        # a path), so a create retried after a crash finds its own earlier result
        # instead of writing a second card.
        contact = for_new_card(contact)
        name = f"{contact.entry_id or os.urandom(16).hex().upper()}{SUFFIX}"
        card = new_card(contact, self.version)
        with self._write_lock, self._forgotten_on_failure(name):
            self._make_folder()
            temporary = self._write_temporary(card.text(), like=None)
            try:
                # A link, not a rename: it fails instead of replacing an existing card.
                os.link(temporary, self.folder / name)
            except FileExistsError:
                raise AlreadyExists(name, href=name) from None
            except OSError as exc:
                raise Unavailable(f"cannot write {name}: {exc.strerror}") from exc
            finally:
                temporary.unlink(missing_ok=True)
            self._sync_folder()
        return self._get(name)

    def _update(self, href: str, contact: Contact, etag: str) -> Contact:
        with self._write_lock:
            name, parsed, index, card = self._locate(href)
            if card.etag() != etag:
                raise WrongEtag(href)
            with self._forgotten_on_failure(name):
                # A copy: the parsed file stays as it is on disk until the write succeeded.
                # A write that failed half way must not leave the edit in it, where a
                # retry would take it for the upstream version and drop the change.
                changed = write_contact(replace(card, lines=list(card.lines)), contact)
                segments = list(parsed.segments)
                segments[index] = (True, changed.text())
                self._replace(name, segments)
        return self._get(href)

    def _delete(self, href: str, etag: str) -> None:
        with self._write_lock:
            name, parsed, index, card = self._locate(href)
            if card.etag() != etag:
                raise WrongEtag(href)
            with self._forgotten_on_failure(name):
                segments = [s for i, s in enumerate(parsed.segments) if i != index]
                if any(is_card for is_card, _ in segments):
                    self._replace(name, segments)
                else:
                    try:
                        (self.folder / name).unlink()
                    except OSError as exc:
                        raise Unavailable(f"cannot remove {name}: {exc.strerror}") from exc
                    self._sync_folder()
            self._files.pop(name, None)

    def _replace(self, name: str, segments: builtins.list[tuple[bool, str]]) -> None:
        target = self.folder / name
        try:
            like = target.stat()
        except OSError as exc:
            raise Unavailable(f"cannot read {name}: {exc.strerror}") from exc
        temporary = self._write_temporary("".join(text for _, text in segments), like)
        with _removed_on_failure(temporary, f"cannot write {name}"):
            os.replace(temporary, target)
        self._files.pop(name, None)
        self._sync_folder()

    def _write_temporary(self, text: str, like: os.stat_result | None) -> Path:
        """A new hidden file in the folder holding `text`, on disk, with the mode and owner
        of `like` (the file it replaces). Removed again if any step fails."""
        temporary = self.folder / f".{os.urandom(8).hex()}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _NEW_FILE_MODE)
        except OSError as exc:
            raise Unavailable(f"cannot write in {self.folder}: {exc.strerror}") from exc
        with (
            _removed_on_failure(temporary, f"cannot write in {self.folder}"),
            os.fdopen(fd, "w", encoding="utf-8", newline="") as handle,
        ):
            handle.write(text)
            handle.flush()
            if like is not None:
                self._keep_mode_and_owner(handle.fileno(), like)
            os.fsync(handle.fileno())
        return temporary

    def _keep_mode_and_owner(self, fd: int, like: os.stat_result) -> None:
        mine = os.fstat(fd)
        if (mine.st_uid, mine.st_gid) != (like.st_uid, like.st_gid):
            try:
                os.fchown(fd, like.st_uid, like.st_gid)
            except PermissionError:
                # Only root may give a file away. The card is still written (refusing
                # would stop every edit of it), in its group if we are a member, and the
                # operator is told who owns it now.
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, -1, like.st_gid)
                event(
                    "vcard_owner_changed",
                    logging.WARNING,
                    source=self.source,
                    folder=str(self.folder),
                    owner=like.st_uid,
                    now=mine.st_uid,
                )
        # After chown, which clears set-id bits.
        os.fchmod(fd, stat.S_IMODE(like.st_mode))

    @contextlib.contextmanager
    def _forgotten_on_failure(self, name: str) -> Iterator[None]:
        """Drop the parsed `name` if the block fails: whatever a failed write left (or
        half-left) in the folder is read again from disk, never assumed."""
        try:
            yield
        except BaseException:
            self._files.pop(name, None)
            raise

    def _make_folder(self) -> None:
        if self.user is None:
            # A shared source's folder is configured to exist: when it does not, it is
            # most likely a mount that dropped, and a folder made in its place would be
            # hidden (with the cards written into it) once the mount is back.
            self._check_folder()
            return
        if self.folder.is_dir():
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _fsync_directory(self.folder.parent)  # the new folder's own name, durably
        except OSError as exc:
            raise Unavailable(f"cannot create {self.folder}: {exc.strerror}") from exc

    def _sync_folder(self) -> None:
        """Make the rename, link or unlink durable: it lives in the folder, not the file."""
        try:
            _fsync_directory(self.folder)
        except OSError as exc:
            # The change is in place and visible; only its surviving a power cut is in
            # doubt. Failing the write would make a retry see our own change as someone
            # else's (a false conflict), so it is reported, not raised.
            event(
                "vcard_folder_sync_failed",
                logging.WARNING,
                source=self.source,
                folder=str(self.folder),
                error=exc.strerror,
            )


@contextlib.contextmanager
def _removed_on_failure(temporary: Path, what: str) -> Iterator[None]:
    """Remove `temporary` if the block fails in any way (an OSError becomes Unavailable):
    a half-done write leaves nothing behind in the folder."""
    try:
        yield
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise Unavailable(f"{what}: {exc.strerror}") from exc
        raise


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
