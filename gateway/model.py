"""The normalized contact: a frozen value shared by every connector and the engine."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from dataclasses import dataclass

#: The phone number kinds of the counterpath dialect, in rendering order.
NUMBER_KINDS: tuple[str, ...] = ("sip", "mobile", "home", "business")

#: Category values Snom and Bria phones understand for `category`.
KNOWN_CATEGORIES: tuple[str, ...] = ("friend", "family", "work", "colleague")


@dataclass(frozen=True, slots=True)
class Contact:
    """One person or address-book card, as every source sees it.

    `uid` is the stable upstream identity (LDAP entryUUID, vCard UID, else the href);
    `href` and `etag` address the upstream object for conditional writes.
    `extra` keeps properties a phone sent that no upstream field maps, so nothing is lost.
    `entry_id` is set only for contacts created on a phone: they keep the phone's id.
    """

    uid: str
    source: str = ""
    href: str = ""
    etag: str = ""
    display_name: str = ""
    given_name: str = ""
    surname: str = ""
    profession: str = ""
    company: str = ""
    comment: str = ""
    emails: tuple[str, ...] = ()
    sip: tuple[str, ...] = ()
    mobile: tuple[str, ...] = ()
    home: tuple[str, ...] = ()
    business: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    vip: bool = False
    dnd: bool = False
    extra: tuple[tuple[str, str], ...] = ()
    entry_id: str = ""

    def __post_init__(self) -> None:
        # Values most contacts of a source share, kept once rather than once per contact
        # (a 100,000-contact source held a copy of its name and categories in each).
        if type(self.source) is str:
            object.__setattr__(self, "source", sys.intern(self.source))
        if self.categories and type(self.categories) is tuple:
            object.__setattr__(self, "categories", _shared(self.categories))

    def __reduce__(self) -> tuple[type[Contact], tuple[object, ...]]:
        # Pickled as the constructor's arguments: half the cost of the slot-by-slot
        # state a frozen dataclass pickles by default (contacts cross to and from
        # worker processes by the hundred thousand).
        return Contact, tuple([getattr(self, name) for name in _FIELDS])

    def numbers(self, kind: str) -> tuple[str, ...]:
        """The numbers of one of NUMBER_KINDS."""
        value: tuple[str, ...] = getattr(self, kind)
        return value

    def replace(self, **changes: object) -> Contact:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def same_content(self, other: Contact) -> bool:
        """Equal in everything a phone can see or change (identity and upstream ETag aside)."""
        ignore = {"source", "href", "etag", "uid"}
        return all(
            getattr(self, f.name) == getattr(other, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ignore
        )


_FIELDS = tuple(field.name for field in dataclasses.fields(Contact))


#: Distinct category lists seen, kept for good: so bounded in number and in size (upstream
#: text: a card of 2,000 long categories must not pin its copy, nor 4,096 such cards a GB).
_SHARED: dict[tuple[str, ...], tuple[str, ...]] = {}
_SHARED_MAX, _SHARED_VALUES, _SHARED_LENGTH = 4096, 8, 64


def _shared(values: tuple[str, ...]) -> tuple[str, ...]:
    found = _SHARED.get(values)
    if found is not None:
        return found
    if (
        len(_SHARED) >= _SHARED_MAX
        or len(values) > _SHARED_VALUES
        or any(type(value) is not str or len(value) > _SHARED_LENGTH for value in values)
    ):
        return values
    values = tuple(sys.intern(value) for value in values)
    return _SHARED.setdefault(values, values)


def entry_id_for(source: str, uid: str) -> str:
    """The stable 32 upper-case hex entry_id of a contact from `source` with `uid`."""
    digest = hashlib.sha256(f"{source}\x00{uid}".encode()).hexdigest()
    return digest[:32].upper()


def effective_entry_id(contact: Contact) -> str:
    """The entry_id a phone sees: the one a phone gave the contact (kept upstream, e.g. in
    X-XCAP-ENTRY-ID), when it is 32 hex digits; else the one derived from the uid. Upstream
    text is data: an odd value there must not become a phone's id (nor, through a phone's
    PUT, a name upstream)."""
    stored = contact.entry_id.upper()
    if len(stored) == 32 and all(ch in _HEX for ch in stored):
        return stored
    return entry_id_for(contact.source, contact.uid)


_HEX = frozenset("0123456789ABCDEF")


@dataclass(frozen=True, slots=True)
class UserRef:
    """Whose document is asked for: the xui from the URL, split for templates.

    The domain is normalized when the value is made (lower case, no trailing dot), so realm
    selection, owner checks and templates all see one spelling: `alice@B.COM.` is
    `alice@b.com`, never a second name for a book or a way past a realm.
    """

    xui: str  # without the "sip:" scheme, e.g. "alice@example.com"

    def __post_init__(self) -> None:
        object.__setattr__(self, "xui", normalize_xui(self.xui))

    @property
    def user(self) -> str:
        return self.xui.split("@", 1)[0]

    @property
    def domain(self) -> str:
        return self.xui.split("@", 1)[1] if "@" in self.xui else ""

    @classmethod
    def parse(cls, raw: str) -> UserRef:
        """Accept `sip:alice@example.com` or `alice@example.com` (any case of the scheme)."""
        text = raw.strip()
        if text[:4].lower() == "sip:":
            text = text[4:]
        return cls(text)

    def names_one_user(self) -> bool:
        """Whether the user part, and the domain when there is an `@`, are each one plain
        name (see `is_one_name`); a bare `alice` has no domain and passes."""
        parts = [self.user, self.domain] if "@" in self.xui else [self.user]
        # A database key too (PostgreSQL's indexes take ~2,700 bytes): no real SIP URI
        # comes near the bound.
        return len(self.xui) <= MAX_XUI and all(is_one_name(part) for part in parts)

    def template_values(self) -> dict[str, str]:
        return {"user": self.user, "domain": self.domain, "xui": self.xui}


#: The longest xui served (characters).
MAX_XUI = 256


def is_one_name(text: str) -> bool:
    """Whether `text` can stand in a path, URL or DN for itself alone: not empty, `.` or
    `..`, and no slash, backslash or control character that could name something around it."""
    if text in ("", ".", ".."):
        return False
    return not any(ch in "/\\" or ch < " " or ch == "\x7f" for ch in text)


def normalize_domain(domain: str) -> str:
    """DNS names are case-insensitive and `a.com.` is `a.com`: one spelling for each."""
    return domain.lower().rstrip(".")


def normalize_xui(xui: str) -> str:
    """`user@domain` with the domain normalized; the user part is kept as it is (it may be
    case-sensitive upstream)."""
    user, at, domain = xui.partition("@")
    return f"{user}{at}{normalize_domain(domain)}" if at else xui
