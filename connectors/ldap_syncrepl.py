"""RFC 4533 (LDAP Content Synchronization) messages, refreshOnly mode, encoded with pyasn1.

ldap3 has no support for this control; it passes the raw control values and intermediate
responses through, and these structures turn them into Python values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import namedtype, namedval, tag, univ

SYNC_REQUEST = "1.3.6.1.4.1.4203.1.9.1.1"
SYNC_STATE = "1.3.6.1.4.1.4203.1.9.1.2"
SYNC_DONE = "1.3.6.1.4.1.4203.1.9.1.3"
SYNC_INFO = "1.3.6.1.4.1.4203.1.9.1.4"
#: resultCode e-syncRefreshRequired: the cookie is too old, start again without one.
SYNC_REFRESH_REQUIRED = 4096


class _SyncRequestValue(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType(
            "mode",
            univ.Enumerated(
                namedValues=namedval.NamedValues(("refreshOnly", 1), ("refreshAndPersist", 3))
            ),
        ),
        namedtype.OptionalNamedType("cookie", univ.OctetString()),
        namedtype.DefaultedNamedType("reloadHint", univ.Boolean(False)),
    )


class _SyncStateValue(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("state", univ.Enumerated()),
        namedtype.NamedType("entryUUID", univ.OctetString()),
        namedtype.OptionalNamedType("cookie", univ.OctetString()),
    )


class _SyncDoneValue(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("cookie", univ.OctetString()),
        namedtype.DefaultedNamedType("refreshDeletes", univ.Boolean(False)),
    )


def _refresh_phase(number: int) -> univ.Sequence:
    class Phase(univ.Sequence):
        componentType = namedtype.NamedTypes(
            namedtype.OptionalNamedType("cookie", univ.OctetString()),
            namedtype.DefaultedNamedType("refreshDone", univ.Boolean(True)),
        )

    return Phase().subtype(
        implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, number)
    )


class _SyncIdSet(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("cookie", univ.OctetString()),
        namedtype.DefaultedNamedType("refreshDeletes", univ.Boolean(False)),
        namedtype.NamedType("syncUUIDs", univ.SetOf(componentType=univ.OctetString())),
    )


class _SyncInfoValue(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType(
            "newcookie",
            univ.OctetString().subtype(
                implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 0)
            ),
        ),
        namedtype.NamedType("refreshDelete", _refresh_phase(1)),
        namedtype.NamedType("refreshPresent", _refresh_phase(2)),
        namedtype.NamedType(
            "syncIdSet",
            _SyncIdSet().subtype(
                implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, 3)
            ),
        ),
    )


def request_control(cookie: bytes | None) -> tuple[str, bool, bytes]:
    """The sync request control for ldap3's `controls=`: refreshOnly, with a cookie if any."""
    value = _SyncRequestValue()
    value["mode"] = "refreshOnly"
    if cookie:
        value["cookie"] = cookie
    return SYNC_REQUEST, True, encoder.encode(value)


STATES = {0: "present", 1: "add", 2: "modify", 3: "delete"}


def decode_state(raw: bytes) -> tuple[str, str]:
    """(state, entryUUID as text) of an entry's sync state control."""
    value, _ = decoder.decode(raw, asn1Spec=_SyncStateValue())
    return STATES[int(value["state"])], str(uuid.UUID(bytes=bytes(value["entryUUID"])))


def decode_done(raw: bytes) -> tuple[bytes | None, bool]:
    """(cookie, refreshDeletes) of the sync done control."""
    value, _ = decoder.decode(raw, asn1Spec=_SyncDoneValue())
    cookie = bytes(value["cookie"]) if value["cookie"].isValue else None
    return cookie, bool(value["refreshDeletes"])


@dataclass
class SyncInfo:
    cookie: bytes | None = None
    deleted: set[str] = field(default_factory=set)
    present: set[str] = field(default_factory=set)


def decode_info(raw: bytes, into: SyncInfo) -> None:
    """Fold one sync info message into `into` (new cookie, deleted or present UUIDs)."""
    value, _ = decoder.decode(raw, asn1Spec=_SyncInfoValue())
    name = value.getName()
    part = value.getComponent()
    if name == "newcookie":
        into.cookie = bytes(part)
        return
    if part["cookie"].isValue:
        into.cookie = bytes(part["cookie"])
    if name == "syncIdSet":
        uuids = {str(uuid.UUID(bytes=bytes(u))) for u in part["syncUUIDs"]}
        (into.deleted if bool(part["refreshDeletes"]) else into.present).update(uuids)
