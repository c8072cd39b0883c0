"""Phonebook URLs: `{phonebook_root}/{format}/users/{xui}/{document}`, read as an
XcapPath (`auid`: the format, `document`: the document key) so that authentication and
owner rules read them as they read XCAP URLs."""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web

from gateway.model import UserRef
from gateway.xcap.uri import XcapPath

_PATH = web.RequestKey[XcapPath | None]("phonebook_path")
#: Formats whose phones append a fixed file name to the URL they are given (Grandstream
#: GETs `<P331>/phonebook.xml`): `…/{document}/{file name}` names the same book.
APPENDED_FILE = {"grandstream": "phonebook.xml"}


def parse_phonebook_path(raw_path: str, root: str) -> XcapPath | None:
    """`{root}/{format}/users/{xui}/{document}` as an XcapPath whose `auid` is the format
    and `document` the document key; None for anything else (or an xui that does not name
    one user, as on the XCAP side). A format in APPENDED_FILE is also found with its file
    name as a fifth segment."""
    path = raw_path.partition("?")[0]
    if not path.startswith(root + "/"):
        return None
    try:
        segments = [unquote(s, errors="strict") for s in path[len(root) + 1 :].split("/")]
    except UnicodeDecodeError:
        return None
    if len(segments) == 5 and APPENDED_FILE.get(segments[0]) == segments[4]:
        segments = segments[:4]
    if len(segments) != 4 or segments[1] != "users" or not all(segments):
        return None
    user = UserRef.parse(segments[2])
    if not user.names_one_user() or any("\x00" in s for s in segments):
        return None
    return XcapPath(segments[0], "users", user, segments[3])


def phonebook_path(request: web.Request, root: str) -> XcapPath | None:
    """The request's phonebook path, parsed once per request."""
    if _PATH not in request:
        request[_PATH] = parse_phonebook_path(request.rel_url.raw_path, root)
    return request[_PATH]
