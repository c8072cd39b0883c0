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
from dataclasses import replace
from pathlib import Path
from typing import Literal

from connectors.vcard import card_to_contact, for_new_card, new_card, write_contact
from connectors.vcard_files import (
    SUFFIX,
    ParsedFile,
    check_folder,
    contacts_of,
    file_name,
    list_files,
    parse_file,
    read_stamped,
    stamp,
)
from connectors.vcard_lines import Card
from gateway.connector import (
    AlreadyExists,
    ConfigPath,
    Connector,
    ConnectorError,
    ConnectorSettings,
    NotFound,
    Unavailable,
    WrongEtag,
    event,
    has_template,
)
from gateway.model import Contact, UserRef

#: New files: the kernel takes the umask off, as for a file any editor creates.
_NEW_FILE_MODE = 0o666


class VcardDirSettings(ConnectorSettings):
    path: ConfigPath
    #: vCard version of cards created from a phone.
    version: Literal["3.0", "4.0"] = "3.0"

    def preflight_problems(self) -> builtins.list[tuple[str, str]]:
        """What `check-config` reports beyond validation. Not checked when loading:
        `serve` starts without the folder and waits for it (see the module docstring).
        A per-user folder appears with its user's first contact: never required."""
        if has_template(str(self.path)):
            return []
        try:
            if not self.path.is_dir():
                what = "is not a folder" if self.path.exists() else "does not exist"
                return [("path", f"folder {self.path} {what}")]
            os.scandir(self.path).close()
        except OSError as exc:
            return [("path", f"cannot read folder {self.path}: {exc.strerror}")]
        return []


#: What a scan keeps of a file while its stamp stays the same: the stamp and its card's
#: etag (the href is the file name), or its cards' (href, etag) when it holds several.
#: Not the parsed cards: a parsed card costs some 30 times its text, and a 100,000-card
#: folder's parses held hundreds of MB that the snapshot holds anyway.
_Listed = tuple[int, str | tuple[tuple[str, str], ...]]


class VcardDirConnector(Connector[VcardDirSettings]):
    settings_model = VcardDirSettings

    def __init__(
        self, source: str, settings: VcardDirSettings, user: UserRef | None = None
    ) -> None:
        super().__init__(source, settings, user)
        self.folder = settings.path
        self.version = settings.version
        self._listed: dict[str, _Listed] = {}
        #: The text of each file the last scan read because it changed, for the
        #: get_many that follows (a sync fetches what changed): a large folder is read
        #: once at start, not twice. Texts, not contacts: after a restart every file is
        #: read and nearly none is fetched (the snapshot has them). get_many takes
        #: them; the next scan drops the rest.
        self._unread: dict[str, str] = {}
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
        # A set: `in` on the sorted list made each rescan of a 100,000-file folder
        # quadratic (minutes of CPU on every sync).
        present = set(names)
        self._listed = {name: f for name, f in self._listed.items() if name in present}
        self._unread = {}
        changed = [name for name in names if not self._unchanged(name)]
        for name, found in list_files(self.folder, changed).items():
            if isinstance(found, NotFound):
                continue  # removed between the listing and the read
            if isinstance(found, ConnectorError):
                raise found
            if len(found.cards) == 1 and found.cards[0][0] == name:
                self._listed[name] = (found.stamp, found.cards[0][1])
            else:
                self._listed[name] = (found.stamp, found.cards)
            self._unread[name] = found.text
        listing: builtins.list[tuple[str, str]] = []
        for name in names:
            if (listed := self._listed.get(name)) is not None:
                kept = listed[1]
                if isinstance(kept, str):
                    listing.append((name, kept))
                else:
                    listing.extend(kept)
        return listing

    def _unchanged(self, name: str) -> bool:
        """Whether `name` is as the last scan read it (same modification time and size)."""
        cached = self._listed.get(name)
        if cached is None:
            return False
        path = os.path.join(self.folder, name)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return False  # read again: gone, or only its folder is
        except OSError as exc:
            raise Unavailable(f"cannot read {path}: {exc.strerror}") from exc
        return cached[0] == stamp(info)

    def _read(self, name: str) -> ParsedFile:
        return parse_file(name, read_stamped(self.folder, name)[0])

    def _forget(self, name: str) -> None:
        """Drop what was kept of `name`: after a write it is read from disk again."""
        self._listed.pop(name, None)
        self._unread.pop(name, None)

    def _check_folder(self) -> None:
        check_folder(self.folder)

    def _locate(self, href: str) -> tuple[str, ParsedFile, int, Card]:
        name = file_name(href)
        parsed = self._read(name)
        if href not in parsed.cards:
            raise NotFound(href)
        index, card = parsed.cards[href]
        return name, parsed, index, card

    def _get(self, href: str) -> Contact:
        *_, card = self._locate(href)
        return card_to_contact(card, self.source, href)

    def _get_many(self, hrefs: builtins.list[str]) -> builtins.list[Contact]:
        """The cards of `hrefs` that exist, each file read (unless the scan just did) and
        parsed once, not again for each of its cards; many in worker processes."""
        unread, self._unread = self._unread, {}
        texts: dict[str, str] = {}
        for href in hrefs:
            with contextlib.suppress(NotFound):
                name = file_name(href)
                if name not in texts:
                    texts[name] = unread[name] if name in unread else self._read_text(name)
        del unread
        found = contacts_of(self.source, texts)
        for href, contact in found.items():
            # The listing's etag as the contact's own string: one copy of each.
            if (listed := self._listed.get(href)) is not None and listed[1] == contact.etag:
                self._listed[href] = (listed[0], contact.etag)
        return [found[href] for href in hrefs if href in found]

    def _read_text(self, name: str) -> str:
        try:
            return read_stamped(self.folder, name)[0]
        except NotFound:
            return ""  # gone since: a file without cards

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
            self._forget(name)

    def _replace(self, name: str, segments: builtins.list[tuple[bool, str]]) -> None:
        target = self.folder / name
        try:
            like = target.stat()
        except OSError as exc:
            raise Unavailable(f"cannot read {name}: {exc.strerror}") from exc
        temporary = self._write_temporary("".join(text for _, text in segments), like)
        with _removed_on_failure(temporary, f"cannot write {name}"):
            os.replace(temporary, target)
        self._forget(name)
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
            self._forget(name)
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
