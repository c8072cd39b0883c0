"""Reading a vcard-dir folder's files: a file's cards with their hrefs; many files' cards'
(href, etag) and text, and many texts' contacts, in worker processes when there are many
(reading and parsing are CPU-bound Python: one core per worker, not one for all)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from connectors.vcard import card_to_contact
from connectors.vcard_lines import Card, card_etag, split_cards
from gateway.connector import (
    ConnectorError,
    NotFound,
    Unavailable,
    bulk,
    give_back,
    map_batches,
)
from gateway.model import Contact

T = TypeVar("T")
SUFFIX = ".vcf"
#: Fewer files than this are read here: a pool's start costs more than they do.
PARALLEL_FROM = 2000
BATCH = 500


@dataclass
class ParsedFile:
    """A file as segments ((True, card text) or (False, text in between)) and its cards."""

    segments: list[tuple[bool, str]]
    cards: dict[str, tuple[int, Card]]  # href -> (segment index, card)


@dataclass(frozen=True)
class ListedFile:
    stamp: int  # see `stamp`, as the file was read
    cards: tuple[tuple[str, str], ...]  # (href, etag)
    text: str


def stamp(info: os.stat_result) -> int:
    """A file's modification time and size in one int (an int is less than a tuple of
    two, per file of a 100,000-file folder): the file changed when it differs."""
    return info.st_mtime_ns ^ (info.st_size << 64)


def file_name(href: str) -> str:
    """The file an href names; NotFound for anything but a plain .vcf name in the folder
    (an href comes back from phones' edits: it never becomes a path of its choosing)."""
    name = href.split("#", 1)[0]
    if "/" in name or "\\" in name or not name.endswith(SUFFIX) or name.startswith("."):
        raise NotFound(href)
    return name


def check_folder(folder: Path) -> None:
    """Unavailable unless the folder is there (a missing card in a missing folder may
    come back with the folder: its changes are retried, not dropped)."""
    try:
        is_folder = folder.is_dir()
    except OSError as exc:
        raise Unavailable(f"cannot read folder {folder}: {exc.strerror}") from exc
    if not is_folder:
        raise Unavailable(f"folder {folder} does not exist")


def read_stamped(folder: Path, name: str) -> tuple[str, int]:
    """The file's text and its stamp as it was read."""
    path = os.path.join(folder, name)
    try:
        # Bytes decoded as they are: CRLF stays CRLF, so untouched cards are rewritten
        # byte for byte (and no text layer per file: a large folder is read at each start).
        # Stamped from the open descriptor: no stat of its own.
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            data = handle.read()
        return data.decode("utf-8-sig"), stamp(info)
    except UnicodeDecodeError as exc:
        raise Unavailable(f"{path} is not UTF-8 (byte {exc.start}): convert it") from exc
    except FileNotFoundError:
        check_folder(folder)  # no folder is not "no card": that would lose changes
        raise NotFound(name) from None
    except OSError as exc:
        raise Unavailable(f"cannot read {path}: {exc.strerror}") from exc


def parse_file(name: str, text: str) -> ParsedFile:
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
    return ParsedFile(segments, indexed)


def list_file(folder: Path, name: str) -> ListedFile:
    text, stamped = read_stamped(folder, name)
    segments = split_cards(text)
    cards = [t for is_card, t in segments if is_card]
    if len(cards) == 1:  # the common case: the href is the file name, no parse needed
        return ListedFile(stamped, ((name, card_etag(cards[0])),), text)
    parsed = parse_file(name, text)
    return ListedFile(
        stamped, tuple((href, card.etag()) for href, (_, card) in parsed.cards.items()), text
    )


def list_files(folder: Path, names: list[str]) -> dict[str, ListedFile | ConnectorError]:
    """Each file's cards and text, or the error reading it gave (NotFound, Unavailable)."""
    found: dict[str, ListedFile | ConnectorError] = {}
    for results in map_batches(partial(_list_batch, folder), _batches(names)):
        found.update(results)
    return found


def contacts_of(source: str, texts: dict[str, str]) -> dict[str, Contact]:
    """The contacts of each file (name -> text), by href."""
    found: dict[str, Contact] = {}
    with bulk():
        for results in map_batches(partial(_contacts_batch, source), _batches([*texts.items()])):
            found.update(results)
    if len(texts) >= PARALLEL_FROM:
        give_back()  # what the results' transfer left in the heap
    return found


def _batches(items: list[T]) -> list[list[T]]:
    if len(items) < PARALLEL_FROM:
        return [items]
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


def _list_batch(folder: Path, names: list[str]) -> list[tuple[str, ListedFile | ConnectorError]]:
    results: list[tuple[str, ListedFile | ConnectorError]] = []
    for name in names:
        try:
            results.append((name, list_file(folder, name)))
        except ConnectorError as exc:
            results.append((name, exc))
    return results


def _contacts_batch(source: str, texts: list[tuple[str, str]]) -> list[tuple[str, Contact]]:
    return [
        (href, card_to_contact(card, source, href))
        for name, text in texts
        for href, (_, card) in parse_file(name, text).cards.items()
    ]
