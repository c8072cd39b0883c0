"""How a document lists its contacts, for every format alike: the display-name template,
the category filters, skipping contacts with nothing to dial, and the order (Unicode
collation, so "Ärger" sorts with "Arger" and "éclair" before "Eva")."""

from __future__ import annotations

import re
import string
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache

import pyuca

from gateway.entry import Entry
from gateway.model import Contact

#: The names a display-name template may use, and the contact field each one reads.
TEMPLATE_FIELDS: dict[str, Callable[[Contact], str]] = {
    "display": lambda c: c.display_name,
    "given": lambda c: c.given_name,
    "surname": lambda c: c.surname,
    "company": lambda c: c.company,
    "title": lambda c: c.profession,
    "email": lambda c: c.emails[0] if c.emails else "",
}
SORT_ORDERS = ("display", "surname", "given")
#: The kinds of number a phone can dial.
DIALLABLE = ("business_number", "mobile_number", "home_number", "sip_address")
#: Left at the ends of a filled template when a part was empty ("Doe, " -> "Doe").
_DANGLING = " ,;:-/|·–—"
#: Brackets around an empty field ("Jane Doe ()" -> "Jane Doe").
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]|\{\s*\}|<\s*>")
_SPACES = re.compile(r"\s+")


def template_error(template: str) -> str | None:
    """Why `template` is not a display-name template, or None when it is one."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"{template!r} is not a template: {exc}"
    names = [name for _, name, _, _ in parts if name is not None]
    if not names:
        return f"{template!r} names no field; use some of {{{'}, {'.join(TEMPLATE_FIELDS)}}}"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conversion:
            return f"{{{name}}} in {template!r} is not a field; use " + ", ".join(
                f"{{{n}}}" for n in TEMPLATE_FIELDS
            )
    return None


def formatted_name(template: str, contact: Contact, fallback: str) -> str:
    """The template filled from `contact`; `fallback` (the default display name) when the
    fields it names are all empty."""
    values = {name: read(contact).strip() for name, read in TEMPLATE_FIELDS.items()}
    text = _EMPTY_BRACKETS.sub("", template.format_map(values))
    text = _SPACES.sub(" ", text).strip(_DANGLING)
    # Separators left between two empty fields ("Doe, , Acme" stays readable enough, but
    # ", " alone is no name).
    return text if any(c.isalnum() for c in text) else fallback


def admitted(categories: Iterable[str], include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a contact in `categories` belongs in the document (case ignored): in one
    of `include` when that is not empty, and in none of `exclude`."""
    held = {category.strip().casefold() for category in categories}
    if include and not held & {category.casefold() for category in include}:
        return False
    return not held & {category.casefold() for category in exclude}


def diallable(entry: Entry) -> bool:
    return any(entry.get(kind) for kind in DIALLABLE)


_COLLATOR = pyuca.Collator()


#: Names whose collation keys are kept: three per contact (surname, given name, display
#: name) of a 100k-contact book, so a recomposition sorts from the cache (~200 bytes each).
COLLATION_KEYS = 524288


@lru_cache(maxsize=COLLATION_KEYS)
def collation_key(text: str) -> bytes:
    """The Unicode Collation Algorithm's key (CLDR root order): accents and case are
    secondary, so names sort as people expect rather than by code point. Packed as
    16-bit big-endian weights (every DUCET and implicit weight fits; bytes compare as the
    weights do) at a quarter of a tuple's memory; cached, as every composition of a book
    sorts the same names again."""
    weights = _COLLATOR.sort_key(text)
    return struct.pack(f">{len(weights)}H", *weights)


#: A locale as ICU names one: language, then script/region/variant parts, and at most the
#: collation keyword (`de_DE@collation=phonebook`).
_LOCALE = re.compile(r"[A-Za-z]{2,8}(?:[_-][A-Za-z0-9]{1,8}){0,3}(?:@collation=([a-z]{1,20}))?")


def locale_error(locale: str) -> str | None:
    """Why `locale` cannot order a document, or None when it can."""
    shape = _LOCALE.fullmatch(locale)
    if shape is None:
        shown = locale if len(locale) <= 40 else locale[:40] + "…"
        return (
            f'sort_locale = {shown!r} is not a locale like "sv", "de_DE" or '
            '"de_DE@collation=phonebook"'
        )
    try:
        import icu
    except ImportError:
        return (
            f"sort_locale = {locale!r} needs PyICU (pip install 'xcap-gateway[icu]'; the "
            "container image has it); without it the order is the CLDR root order"
        )
    language = icu.Locale(locale).getLanguage()
    if not language or language not in {
        icu.Locale(name).getLanguage() for name in icu.Collator.getAvailableLocales()
    }:
        return (
            f'sort_locale = {locale!r} is not a locale ICU has a collation for (e.g. "sv", "de_DE")'
        )
    keyword = shape.group(1)
    if keyword and keyword not in set(icu.Collator.getKeywordValues("collation")):
        return f"sort_locale = {locale!r}: ICU has no collation {keyword!r}"
    return None


@lru_cache(maxsize=16)
def collation_for(locale: str) -> Callable[[str], bytes]:
    """The sort key of `locale`'s collation (ICU: Swedish puts Å, Ä, Ö after Z, German
    phonebook order reads Ü as UE); the CLDR root order for ""."""
    if not locale:
        return collation_key
    import icu

    collator = icu.Collator.createInstance(icu.Locale(locale))
    return lru_cache(maxsize=COLLATION_KEYS)(collator.getSortKey)


def order_key(sort: str, locale: str = "") -> Callable[[Entry], tuple[object, ...]]:
    """The key entries are listed by under `sort` ("display", "surname" or "given") in
    `locale`'s collation; entries without the field sort by their display name; entry_id
    settles ties."""
    collate = collation_for(locale)

    def key(entry: Entry) -> tuple[object, ...]:
        first = entry.display_name
        if sort == "surname":
            first = str(entry.get("surname") or "") or entry.display_name
            second = str(entry.get("given_name") or "")
        elif sort == "given":
            first = str(entry.get("given_name") or "") or entry.display_name
            second = str(entry.get("surname") or "")
        else:
            second = ""
        return (collate(first), collate(second), collate(entry.display_name), entry.entry_id)

    return key


def ordered(
    entries: Mapping[str, Entry] | Iterable[Entry], sort: str = "display", locale: str = ""
) -> list[Entry]:
    """The entries in the document's order. Every format lists them so: equal ETags mean
    equal lists."""
    values = entries.values() if isinstance(entries, Mapping) else entries
    return sorted(values, key=order_key(sort, locale))
