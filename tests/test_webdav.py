"""What CardDAV servers are known to send, recorded, and how it is normalized.
(Radicale and Xandikos run for real in the connector tests; these servers cannot run here.)"""

from __future__ import annotations

from connectors import webdav

# Nextcloud (sabre/dav): absolute paths, percent-encoded names, quoted strong ETags,
# address-data, and a per-item 404 inside the 207 for a card deleted meanwhile.
NEXTCLOUD_MULTIGET = b"""<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav" xmlns:s="http://sabredav.org/ns">
 <d:response>
  <d:href>/remote.php/dav/addressbooks/users/alice/contacts/Anna%20M%C3%BCller.vcf</d:href>
  <d:propstat><d:prop><d:getetag>&quot;5f1c2e&quot;</d:getetag>
   <card:address-data>BEGIN:VCARD&#13;
VERSION:3.0&#13;
UID:anna&#13;
FN:Anna M\xc3\xbcller&#13;
END:VCARD&#13;
</card:address-data></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
 <d:response>
  <d:href>/remote.php/dav/addressbooks/users/alice/contacts/gone.vcf</d:href>
  <d:propstat><d:prop><d:getetag/><card:address-data/></d:prop>
   <d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>
 </d:response>
</d:multistatus>"""

# SOGo: full URLs as hrefs, and a sync-collection answer with deletions as response status.
SOGO_SYNC = b"""<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:">
<D:response><D:href>https://mail.example.com/SOGo/dav/alice/Contacts/personal/1A2B.vcf</D:href>
<D:propstat><D:status>HTTP/1.1 200 OK</D:status><D:prop><D:getetag>"gcs00000007"</D:getetag></D:prop></D:propstat></D:response>
<D:response><D:href>https://mail.example.com/SOGo/dav/alice/Contacts/personal/OLD.vcf</D:href>
<D:status>HTTP/1.1 404 Not Found</D:status></D:response>
<D:sync-token>1700000000</D:sync-token>
</D:multistatus>"""

# Baikal (sabre/dav): a relative href, a weak ETag, a home set without trailing slash.
BAIKAL_PROPFIND = b"""<?xml version="1.0" encoding="utf-8"?>
<d:multistatus xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav">
<d:response><d:href>card.php/addressbooks/alice</d:href>
<d:propstat><d:prop><card:addressbook-home-set><d:href>/dav.php/addressbooks/alice</d:href></card:addressbook-home-set>
<d:resourcetype><d:collection/></d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
<d:propstat><d:prop><d:displayname/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>
</d:response>
<d:response><d:href>/dav.php/addressbooks/alice/default/x.vcf</d:href>
<d:propstat><d:prop><d:getetag>W/"weak-1"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
</d:multistatus>"""


def test_nextcloud_multiget_with_a_per_item_404() -> None:
    base = "https://cloud.example.com/remote.php/dav/addressbooks/users/alice/contacts/"
    found = webdav.parse_multistatus(NEXTCLOUD_MULTIGET, base)
    anna, gone = found.responses
    assert anna.href == "/remote.php/dav/addressbooks/users/alice/contacts/Anna%20M%C3%BCller.vcf"
    assert anna.text(webdav.dav("getetag")) == '"5f1c2e"'
    assert "FN:Anna Müller" in anna.text(webdav.carddav("address-data"))
    # The 404 propstat leaves no properties: the connector treats the card as gone.
    assert gone.props == {} and gone.text(webdav.carddav("address-data")) == ""


def test_sogo_full_urls_and_deletions_in_a_sync_answer() -> None:
    base = "https://mail.example.com/SOGo/dav/alice/Contacts/personal/"
    found = webdav.parse_multistatus(SOGO_SYNC, base)
    assert [(r.href, r.status) for r in found.responses] == [
        ("/SOGo/dav/alice/Contacts/personal/1A2B.vcf", None),
        ("/SOGo/dav/alice/Contacts/personal/OLD.vcf", 404),
    ]
    assert found.sync_token == "1700000000"


def test_baikal_relative_hrefs_weak_etags_and_missing_slashes() -> None:
    base = "https://dav.example.com/dav.php/"
    found = webdav.parse_multistatus(BAIKAL_PROPFIND, base)
    home, card = found.responses
    assert home.href == "/dav.php/card.php/addressbooks/alice"
    assert home.hrefs(webdav.carddav("addressbook-home-set"), base) == [
        "/dav.php/addressbooks/alice"
    ]
    assert webdav.as_collection(
        home.hrefs(webdav.carddav("addressbook-home-set"), base)[0]
    ).endswith("/")
    assert "displayname" not in str(home.props)  # 404 propstats are ignored
    assert card.text(webdav.dav("getetag")) == 'W/"weak-1"'


def test_one_canonical_form_for_every_spelling_of_an_href() -> None:
    base = "https://dav.example.com/alice/contacts/"
    spellings = [
        "/alice/contacts/J%C3%BCrgen%20M.vcf",
        "/alice/contacts/Jürgen M.vcf",
        "https://dav.example.com/alice/contacts/J%c3%bcrgen%20M.vcf",
        "J%C3%BCrgen%20M.vcf",
    ]
    assert {webdav.canonical_path(base, s) for s in spellings} == {
        "/alice/contacts/J%C3%BCrgen%20M.vcf"
    }
    assert webdav.canonical_path(base, "/alice%40example.com/") == "/alice@example.com/"


def test_error_bodies_name_their_condition() -> None:
    body = b'<?xml version="1.0"?><error xmlns="DAV:"><valid-sync-token/></error>'
    assert webdav.error_conditions(body) == {webdav.dav("valid-sync-token")}
    assert webdav.error_conditions(b"<html>nope</html>") == set()
    assert webdav.error_conditions(b"not xml") == set()


def test_request_bodies_are_well_formed() -> None:
    for body in (
        webdav.propfind(webdav.dav("getetag")),
        webdav.sync_collection(""),
        webdav.multiget(["/a/1.vcf", "/a/2.vcf"]),
    ):
        assert webdav.parse_xml(body) is not None
    assert b"<D:href>/a/2.vcf</D:href>" in webdav.multiget(["/a/1.vcf", "/a/2.vcf"]).replace(
        b"d:", b"D:"
    )
