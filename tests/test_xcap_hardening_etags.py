"""Issue 12, item 6: entity-tags compared as RFC 9110 says: lists, quoted commas, W/ for
weak; the strong comparison for If-Match (a weak tag never matches), the weak one for
If-None-Match. The helpers are what every XCAP view and the engine evaluate headers with."""

from __future__ import annotations

import pytest

from gateway.xcap.http import if_match_holds, if_none_match_holds, named_etags
from tests.xcap.support import ALICE_DOC, Client, put_index

LIST1 = f"{ALICE_DOC}/~~/resource-lists/list[1]"


async def test_a_weak_entity_tag_never_satisfies_if_match(xcap_client: Client) -> None:
    etag = (await put_index(xcap_client)).headers["ETag"]
    assert (await put_index(xcap_client, **{"If-Match": f"W/{etag}"})).status == 412
    element = f"{LIST1}/entry[1]"
    assert (await xcap_client.delete(element, headers={"If-Match": f"W/{etag}"})).status == 412
    assert (await xcap_client.get(ALICE_DOC)).headers["ETag"] == etag
    # If-None-Match compares weakly: the weak tag names the current version.
    assert (await xcap_client.get(ALICE_DOC, headers={"If-None-Match": f"W/{etag}"})).status == 304
    assert (await put_index(xcap_client, **{"If-None-Match": f'"x", W/{etag}'})).status == 412
    assert (await put_index(xcap_client, **{"If-Match": f'"x,y", {etag}'})).status == 200


@pytest.mark.parametrize(
    ("header", "etag", "holds"),
    [
        (None, '"a"', True),
        (None, None, True),
        ('"a"', '"a"', True),
        ('"a"', '"b"', False),
        ('W/"a"', '"a"', False),  # strong comparison: a weak tag never matches
        ('"a"', 'W/"a"', False),
        ('"x", "a"', '"a"', True),
        ('"x","a"', '"a"', True),
        ('"a,b"', '"a"', False),  # one tag with a comma in it
        ('"a,b"', '"a,b"', True),
        ('"x, y", "a"', '"a"', True),
        ("*", '"a"', True),
        ("*", None, False),
        ('"a"', None, False),
        ("", '"a"', False),
        ("a", '"a"', True),  # a bare token, as some clients send
    ],
)
def test_if_match_holds(header: str | None, etag: str | None, holds: bool) -> None:
    assert if_match_holds(header, etag) is holds


@pytest.mark.parametrize(
    ("header", "etag", "holds"),
    [
        (None, '"a"', True),
        ('"a"', '"a"', False),
        ('W/"a"', '"a"', False),  # weak comparison
        ('"a"', 'W/"a"', False),
        ('"b"', '"a"', True),
        ('"b", W/"a"', '"a"', False),
        ('"a,b"', '"a"', True),
        ("*", '"a"', False),
        ("*", None, True),
        ('"a"', None, True),
    ],
)
def test_if_none_match_holds(header: str | None, etag: str | None, holds: bool) -> None:
    assert if_none_match_holds(header, etag) is holds


def test_named_etags() -> None:
    assert named_etags('W/"a", "b" ,"c,d",W/"e"') == ['"b"', '"c,d"']
    assert named_etags("*") == []
    assert named_etags(None) == []
    assert named_etags('"unterminated') == []
