"""The ldap connector against a real slapd: the contract, paging, incremental sync,
escaping, TLS, the errors an administrator meets, and Active-Directory-style attributes.
Every test runs once per client that can page through a full pull (`client`)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ldap3 import MODIFY_REPLACE

from connectors.ldap import LdapConnector
from connectors.ldap_fast import available
from connectors.ldap_settings import LdapSettings
from gateway.connector import (
    AlreadyExists,
    InvalidToken,
    Rejected,
    Unavailable,
    WrongEtag,
    load_connector_class,
)
from gateway.model import Contact, UserRef
from tests.connector_contract import SAMPLE, ConnectorContract, listing
from tests.ldap.server import (
    CONTACTS,
    PEOPLE,
    READER_DN,
    SERVICE_PASSWORD,
    SUFFIX,
    WRITER_DN,
    Slapd,
    admin_connection,
)

MakeSlapd = Callable[..., Slapd]

#: The client connector() gives its connectors, set per test by the `ldap_client` fixture.
_client = "ldap3"


@pytest.fixture(
    autouse=True,
    params=[
        "ldap3",
        pytest.param(
            "python-ldap",
            marks=pytest.mark.skipif(
                not available(), reason="python-ldap is not installed (make .venv/bin/.ldap-c)"
            ),
        ),
    ],
)
def ldap_client(request: pytest.FixtureRequest) -> Iterator[str]:
    """Named explicitly, never "auto": a python-ldap failure must not pass as an ldap3 run."""
    global _client
    _client = request.param
    yield _client
    _client = "ldap3"


def connector(server: Slapd, user: UserRef | None = None, **overrides: Any) -> LdapConnector:
    values: dict[str, Any] = {
        "url": server.url,
        "bind_dn": READER_DN,
        "password": SERVICE_PASSWORD,
        "base_dn": PEOPLE,
        "page_size": 200,
        "client": _client,
        **overrides,
    }
    settings = LdapSettings.model_validate(values)
    if user is not None:
        settings = LdapConnector.settings_for_user(settings, user.template_values())
    return LdapConnector("people", settings, user)


class TestLdapContract(ConnectorContract):
    # OpenLDAP's inetOrgPerson has no SIP, category or flag attributes.
    sample = SAMPLE.replace(sip=(), categories=(), vip=False)
    missing_href = f"cn=nobody,{CONTACTS}"

    @pytest.fixture
    def connector(self, make_slapd: MakeSlapd) -> LdapConnector:
        return connector(
            make_slapd(),
            bind_dn=WRITER_DN,
            base_dn=CONTACTS,
            create_base_dn=CONTACTS,
            entry_id_attribute="employeeNumber",
        )


class TestLdapContractWithDefaults(ConnectorContract):
    """Only what a create needs: no `entry_id_attribute` marks the entries made from a
    phone, so a retried create must recognise its own entry by what it holds."""

    sample = TestLdapContract.sample
    missing_href = TestLdapContract.missing_href
    keeps_entry_id = False

    @pytest.fixture
    def connector(self, make_slapd: MakeSlapd) -> LdapConnector:
        return connector(make_slapd(), bind_dn=WRITER_DN, base_dn=CONTACTS, create_base_dn=CONTACTS)


def test_registered_as_an_entry_point() -> None:
    assert load_connector_class("ldap") is LdapConnector


async def test_a_full_pull_pages_past_the_bind_dns_size_limit(make_slapd: MakeSlapd) -> None:
    server = make_slapd(people=1200)
    result = await connector(server).changes(None)
    assert result.complete and len(result.changed) == 1200
    person = next(c for c in result.changed if c.href == f"uid=user000007,{PEOPLE}")
    assert person.display_name == "Person 000007" and person.business == ("+49 30 1000007",)
    assert uuid.UUID(person.uid)  # entryUUID is the identity


async def test_a_size_limit_fails_the_pull_instead_of_shortening_it(make_slapd: MakeSlapd) -> None:
    server = make_slapd(people=1200, reader_prtotal="1000")
    with pytest.raises(Unavailable, match="size limit was hit after 1000 entries"):
        await connector(server).changes(None)


async def test_content_sync_reports_adds_changes_and_deletes(make_slapd: MakeSlapd) -> None:
    server = make_slapd(people=50)
    ldap = connector(server)
    full = await ldap.changes(None)
    assert '"mode": "syncrepl"' in full.token
    nothing = await ldap.changes(full.token)
    assert nothing.changed == () and not nothing.deleted and nothing.present is None
    uids = {c.href: c.uid for c in full.changed}
    admin = admin_connection(server)
    admin.modify(f"uid=user000003,{PEOPLE}", {"title": [(MODIFY_REPLACE, ["Director"])]})
    admin.delete(f"uid=user000004,{PEOPLE}")
    admin.add(f"uid=new,{PEOPLE}", ["inetOrgPerson"], {"cn": "New Person", "sn": "Person"})
    admin.unbind()
    delta = await ldap.changes(nothing.token)
    assert {c.href: c.profession for c in delta.changed} == {
        f"uid=user000003,{PEOPLE}": "Director",
        f"uid=new,{PEOPLE}": "",
    }
    assert delta.deleted == {uids[f"uid=user000004,{PEOPLE}"]}
    again = await ldap.changes(delta.token)
    assert again.changed == () and not again.deleted


async def test_a_cookie_older_than_the_session_log_gets_a_present_phase(
    make_slapd: MakeSlapd,
) -> None:
    server = make_slapd(people=3)
    ldap = connector(server)
    uids = {c.uid for c in (await ldap.changes(None)).changed}
    old = base64.b64encode(b"rid=000,csn=20000101000000.000000Z#000000#000#000000").decode()
    result = await ldap.changes(json.dumps({"mode": "syncrepl", "cookie": old}))
    # Every entry is named present or changed, so nothing is taken for deleted.
    assert result.present is not None
    assert result.present | {c.uid for c in result.changed} == uids


async def test_an_unreadable_token_asks_for_a_full_pull(make_slapd: MakeSlapd) -> None:
    ldap = connector(make_slapd(people=1))
    for token in ("not a token", '{"mode": "usn"}', "[]"):
        with pytest.raises(InvalidToken):
            await ldap.changes(token)


async def test_timestamp_mode_sees_changes_and_a_full_pass_sees_deletions(
    make_slapd: MakeSlapd,
) -> None:
    server = make_slapd(people=20)
    ldap = connector(server, incremental="timestamp", full_sync_interval=3600)
    full = await ldap.changes(None)
    assert '"mode": "timestamp"' in full.token
    admin = admin_connection(server)
    admin.modify(f"uid=user000005,{PEOPLE}", {"title": [(MODIFY_REPLACE, ["CEO"])]})
    admin.delete(f"uid=user000006,{PEOPLE}")
    admin.unbind()
    delta = await ldap.changes(full.token)
    assert not delta.complete
    assert f"uid=user000005,{PEOPLE}" in {c.href for c in delta.changed}
    assert all(c.href != f"uid=user000006,{PEOPLE}" for c in delta.changed)
    due = connector(server, incremental="timestamp", full_sync_interval=0.001)
    later = await due.changes(delta.token)
    assert later.complete and len(later.changed) == 19


@pytest.mark.parametrize(("user", "expected"), [("user000001", 1), ("*)(uid=*", 0), ("*", 0)])
async def test_per_user_filters_escape_what_they_fill_in(
    make_slapd: MakeSlapd, user: str, expected: int
) -> None:
    server = make_slapd(people=5)
    ldap = connector(
        server, UserRef(f"{user}@example.com"), filter="(&(objectClass=inetOrgPerson)(uid={user}))"
    )
    assert len((await ldap.changes(None)).changed) == expected


def test_per_user_dns_escape_what_they_fill_in() -> None:
    settings = LdapSettings(url=["ldap://x"], base_dn="ou={user},dc=example,dc=com")  # type: ignore[arg-type]
    filled = LdapConnector.settings_for_user(settings, UserRef("a,ou=x+b@d").template_values())
    assert filled.base_dn == "ou=a\\,ou\\=x\\+b,dc=example,dc=com"


async def test_ldaps_and_starttls_with_the_test_ca(make_slapd: MakeSlapd, ldap_client: str) -> None:
    server = make_slapd(people=2)
    # libldap checks a certificate for "localhost" against this machine's own name (see
    # test_ldap_clients): python-ldap is given the address, which the certificate names too.
    host = "localhost" if ldap_client == "ldap3" else "127.0.0.1"
    secure = connector(
        server, url=server.ldaps_url.replace("localhost", host), tls_ca_file=server.ca_file
    )
    assert len(await listing(secure)) == 2
    upgraded = connector(
        server,
        url=server.url.replace("127.0.0.1", host),
        starttls=True,
        tls_ca_file=server.ca_file,
    )
    assert len(await listing(upgraded)) == 2


async def test_an_untrusted_certificate_says_to_set_tls_ca_file(make_slapd: MakeSlapd) -> None:
    server = make_slapd()
    with pytest.raises(Unavailable, match="not trusted; set tls_ca_file"):
        await listing(connector(server, url=server.ldaps_url))


async def test_errors_an_administrator_meets(make_slapd: MakeSlapd) -> None:
    server = make_slapd(people=1)
    with pytest.raises(Unavailable, match="invalid credentials.*check bind_dn and password"):
        await listing(connector(server, password="wrong"))
    with pytest.raises(Unavailable, match="base_dn 'ou=nowhere,dc=example,dc=com' does not exist"):
        await listing(connector(server, base_dn=f"ou=nowhere,{SUFFIX}"))
    dead = f"ldap://127.0.0.1:{server.tls_port + 1 if server.tls_port < 65535 else 1}"
    with pytest.raises(Unavailable, match="cannot connect"):
        await listing(connector(server, url=dead, timeout=2))
    # A list of URLs fails over to the next server.
    assert len(await listing(connector(server, url=[dead, server.url], timeout=2))) == 1


async def test_a_missing_base_dn_is_named_by_the_pull_itself(make_slapd: MakeSlapd) -> None:
    # Timestamp mode asks nothing of base_dn before the paged search (content sync does).
    ldap = connector(make_slapd(people=1), base_dn=f"ou=nowhere,{SUFFIX}", incremental="timestamp")
    with pytest.raises(Unavailable, match="base_dn 'ou=nowhere,dc=example,dc=com' does not exist"):
        await ldap.changes(None)


AD_PERSON = f"""dn: cn=Jane Roe,{PEOPLE}
objectClass: inetOrgPerson
objectClass: adUser
cn: Jane Roe
sn: Roe
givenName: Jane
displayName: Jane Roe
company: Contoso
info: Prefers e-mail
telephoneNumber: +1 425 555 0100
otherTelephone: +1 425 555 0101
otherTelephone: +1 425 555 0102
mobile: +1 206 555 0199
otherMobile: +1 206 555 0198
msRTCSIP-PrimaryUserAddress: sip:jane@contoso.example
objectGUID:: {base64.b64encode(uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427").bytes_le).decode()}

"""


def ad_connector(server: Slapd, **overrides: Any) -> LdapConnector:
    return connector(
        server,
        preset="active-directory",
        filter="(objectClass=adUser)",
        incremental="timestamp",
        **overrides,
    )


async def test_active_directory_preset_maps_other_numbers_and_object_guid(
    make_slapd: MakeSlapd,
) -> None:
    server = make_slapd(extra_ldif=AD_PERSON)
    (jane,) = (await ad_connector(server).changes(None)).changed
    assert jane.uid == "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert jane.business == ("+1 425 555 0100", "+1 425 555 0101", "+1 425 555 0102")
    assert jane.mobile == ("+1 206 555 0199", "+1 206 555 0198")
    assert jane.sip == ("jane@contoso.example",)
    assert (jane.company, jane.comment) == ("Contoso", "Prefers e-mail")


async def test_writes_change_only_mapped_values_and_fail_on_a_concurrent_change(
    make_slapd: MakeSlapd,
) -> None:
    server = make_slapd(extra_ldif=AD_PERSON)
    ldap = ad_connector(server, bind_dn=WRITER_DN)
    (jane,) = (await ldap.changes(None)).changed
    wanted = jane.replace(
        business=("+1 425 555 0100", "+1 425 555 0102", "+1 425 555 0103"),
        mobile=("+1 206 555 0000",),
        profession="CFO",
    )
    stored = await ldap.update(jane.href, wanted, jane.etag)
    assert stored.same_content(wanted) and stored.etag != jane.etag
    admin = admin_connection(server)
    admin.search(jane.href, "(objectClass=*)", attributes=["*"])
    entry = admin.entries[0]
    assert set(entry.otherTelephone.values) == {"+1 425 555 0102", "+1 425 555 0103"}
    assert entry.telephoneNumber.value == "+1 425 555 0100"
    assert entry.mobile.value == "+1 206 555 0000" and "otherMobile" not in entry.entry_attributes
    assert entry.info.value == "Prefers e-mail" and entry.company.value == "Contoso"
    # Someone edits the title in the directory: a write from the stale version fails.
    admin.modify(jane.href, {"title": [(MODIFY_REPLACE, ["CEO"])]})
    with pytest.raises(WrongEtag):
        await ldap.update(jane.href, stored.replace(profession="COO"), stored.etag)
    admin.unbind()


async def test_a_value_deleted_meanwhile_makes_the_modify_fail(make_slapd: MakeSlapd) -> None:
    server = make_slapd(people=1)
    ldap = connector(server, bind_dn=WRITER_DN)
    (person,) = (await ldap.changes(None)).changed
    from connectors.ldap_entry import modifications

    admin = admin_connection(server)
    admin.search(person.href, "(objectClass=*)", attributes=["*"])
    raw = {
        k: [v.encode() for v in vals]
        for k, vals in admin.entries[0].entry_attributes_as_dict.items()
    }
    changes = modifications(person, person.replace(mobile=("+1",)), raw, ldap.mapping)
    assert changes == {"mobile": [("MODIFY_DELETE", ["+49 171 1000000"]), ("MODIFY_ADD", ["+1"])]}
    admin.modify(person.href, {"mobile": [(MODIFY_REPLACE, ["+2"])]})
    admin.unbind()
    conn = ldap.client.open()
    conn.modify(person.href, changes)
    assert conn.result["result"] == 16  # noSuchAttribute: nothing overwritten
    conn.unbind()


async def test_create_uses_the_rdn_and_suffixes_a_name_that_is_taken(make_slapd: MakeSlapd) -> None:
    server = make_slapd()
    ldap = connector(server, bind_dn=WRITER_DN, base_dn=CONTACTS, create_base_dn=CONTACTS)
    first = await ldap.create(
        Contact(
            uid="", entry_id="AB" * 16, display_name="Max Muster", surname="Muster", home=("1",)
        )
    )
    assert first.href == f"cn=Max Muster,{CONTACTS}"
    second = await ldap.create(Contact(uid="", entry_id="CD" * 16, display_name="Max Muster"))
    assert second.href == f"cn=Max Muster (CDCDCDCD),{CONTACTS}"
    # The same create retried lands on its own earlier result, not a third entry.
    with pytest.raises(AlreadyExists):
        await ldap.create(Contact(uid="", entry_id="CD" * 16, display_name="Max Muster"))
    assert len(await listing(ldap)) == 2


async def test_a_retried_create_finds_its_entry_and_never_takes_another_persons(
    make_slapd: MakeSlapd,
) -> None:
    server = make_slapd()
    ldap = connector(server, bind_dn=WRITER_DN, base_dn=CONTACTS, create_base_dn=CONTACTS)
    assert ldap.settings.entry_id_attribute is None  # the default: no marker to search for
    max_ = Contact(
        uid="", entry_id="AB" * 16, display_name="Max Muster", surname="Muster", home=("1",)
    )
    first = await ldap.create(max_)
    # The answer to the first add was lost (a crash, a timeout): the outbox tries again.
    with pytest.raises(AlreadyExists):
        await ldap.create(max_)
    assert list(await listing(ldap)) == [first.href]
    # Another person of the same name gets an entry of their own, suffixed; Max's is
    # left as it was.
    namesake = max_.replace(entry_id="CD" * 16, home=("2",))
    second = await ldap.create(namesake)
    assert second.href == f"cn=Max Muster (CDCDCDCD),{CONTACTS}"
    assert second.home == ("2",) and await ldap.get(first.href) == first
    with pytest.raises(AlreadyExists):
        await ldap.create(namesake)
    # A namesake with less (no home number) holds a subset of Max's values: not Max.
    third = await ldap.create(max_.replace(entry_id="EF" * 16, home=()))
    assert third.href == f"cn=Max Muster (EFEFEFEF),{CONTACTS}"
    assert len(await listing(ldap)) == 3


async def test_a_name_taken_in_every_suffixed_form_is_rejected_not_merged(
    make_slapd: MakeSlapd,
) -> None:
    server = make_slapd()
    ldap = connector(server, bind_dn=WRITER_DN, base_dn=CONTACTS, create_base_dn=CONTACTS)
    admin = admin_connection(server)
    for name in ("Max Muster", "Max Muster (ABABABAB)", f"Max Muster ({'AB' * 16})"):
        admin.add(f"cn={name},{CONTACTS}", ["inetOrgPerson"], {"sn": "Someone else"})
    admin.unbind()
    with pytest.raises(Rejected, match="taken by other entries"):
        await ldap.create(Contact(uid="", entry_id="AB" * 16, display_name="Max Muster"))
    assert len(await listing(ldap)) == 3


async def test_without_create_base_dn_creates_are_refused(make_slapd: MakeSlapd) -> None:
    ldap = connector(make_slapd(), bind_dn=WRITER_DN)
    with pytest.raises(Exception, match="create_base_dn"):
        await ldap.create(SAMPLE)


async def test_a_reader_cannot_write(make_slapd: MakeSlapd) -> None:
    server = make_slapd(people=1)
    ldap = connector(server)
    (person,) = (await ldap.changes(None)).changed
    with pytest.raises(Exception, match="insufficient access"):
        await ldap.update(person.href, person.replace(profession="x"), person.etag)


async def test_an_attribute_the_schema_lacks_is_a_clear_rejection(make_slapd: MakeSlapd) -> None:
    server = make_slapd(people=1)
    for attribute, reason in (
        ("noSuchAttribute", "undefinedAttributeType"),
        ("ipPhone", "objectClass"),
    ):
        # ipPhone exists, but person entries here lack the auxiliary class that allows it.
        ldap = connector(server, bind_dn=WRITER_DN, attributes={"sip": [attribute]})
        (person,) = (await ldap.changes(None)).changed
        if attribute == "ipPhone":
            admin = admin_connection(server)
            admin.modify(person.href, {"objectClass": [("MODIFY_DELETE", ["adUser"])]})
            admin.unbind()
            (person,) = (await ldap.changes(None)).changed
        with pytest.raises(Rejected, match=f"refused by the directory's schema.*{reason}"):
            await ldap.update(person.href, person.replace(sip=("100",)), person.etag)
