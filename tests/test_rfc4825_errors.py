"""RFC 4825 §11: every 409 condition, each body valid against the xcap-error schema."""

from __future__ import annotations

from tests.xcap.support import (
    ALICE_DOC,
    ATT_TYPE,
    EL_TYPE,
    INDEX,
    Client,
    conflict,
    put_index,
)

LIST1 = f"{ALICE_DOC}/~~/resource-lists/list[1]"


async def test_not_well_formed(xcap_client: Client) -> None:
    await conflict(await put_index(xcap_client, b"<resource-lists><list>"), "not-well-formed")


async def test_not_utf_8(xcap_client: Client) -> None:
    body = '<?xml version="1.0" encoding="ISO-8859-1"?><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="M\xfcller"/></resource-lists>'.encode(
        "latin-1"
    )
    await conflict(await put_index(xcap_client, body), "not-utf-8")


async def test_schema_validation_error(xcap_client: Client) -> None:
    body = INDEX.replace(b'<entry uri="sip:boss@example.com"/>', b"<entry/>")
    await conflict(await put_index(xcap_client, body), "schema-validation-error")


async def test_uniqueness_failure_names_the_field_and_an_alternative(xcap_client: Client) -> None:
    body = INDEX.replace(b'<list name="work">', b'<list name="friends">')
    element = await conflict(await put_index(xcap_client, body), "uniqueness-failure")
    (exists,) = element
    assert exists.get("field") == "resource-lists/list/@name"
    assert [alt.text for alt in exists] == ["friends-2"]


async def test_constraint_failure(xcap_client: Client) -> None:
    body = INDEX.replace(
        b'<entry uri="sip:boss@example.com"/>', b'<external anchor="ftp://example.com/lists"/>'
    )
    await conflict(await put_index(xcap_client, body), "constraint-failure")


async def test_not_xml_frag(xcap_client: Client) -> None:
    await put_index(xcap_client)
    url = f"{LIST1}/entry[3]"
    for body in (b'<entry uri="sip:a@x"/><entry uri="sip:b@x"/>', b"just text", b"<entry"):
        await conflict(
            await xcap_client.put(url, data=body, headers={"Content-Type": EL_TYPE}), "not-xml-frag"
        )


async def test_not_xml_att_value(xcap_client: Client) -> None:
    await put_index(xcap_client)
    for body in (b'a"b', b"a<b", b"a&b"):
        response = await xcap_client.put(
            f"{LIST1}/@name", data=body, headers={"Content-Type": ATT_TYPE}
        )
        await conflict(response, "not-xml-att-value")


async def test_no_parent_names_the_deepest_ancestor(xcap_client: Client) -> None:
    await put_index(xcap_client)
    url = f"{ALICE_DOC}/~~/resource-lists/list[@name=%22family%22]/entry"
    element = await conflict(
        await xcap_client.put(
            url, data=b'<entry uri="sip:mom@example.com"/>', headers={"Content-Type": EL_TYPE}
        ),
        "no-parent",
    )
    (ancestor,) = element
    assert ancestor.text is not None
    assert ancestor.text.endswith(f"{ALICE_DOC}/~~/resource-lists")
    missing = "/resource-lists/users/sip:alice@example.com/missing/~~/resource-lists/list"
    await conflict(
        await xcap_client.put(missing, data=b'<list name="x"/>', headers={"Content-Type": EL_TYPE}),
        "no-parent",
    )


async def test_cannot_insert(xcap_client: Client) -> None:
    await put_index(xcap_client)
    # Position 5 cannot be made: there are two entries.
    await conflict(
        await xcap_client.put(
            f"{LIST1}/entry[5]", data=b'<entry uri="sip:e@x"/>', headers={"Content-Type": EL_TYPE}
        ),
        "cannot-insert",
    )
    # The element does not match its selector.
    await conflict(
        await xcap_client.put(
            f"{LIST1}/entry[@uri=%22sip:a@x%22]",
            data=b'<entry uri="sip:b@x"/>',
            headers={"Content-Type": EL_TYPE},
        ),
        "cannot-insert",
    )


async def test_cannot_delete(xcap_client: Client) -> None:
    await put_index(xcap_client)
    # Deleting the first entry would make the second one "entry[1]".
    await conflict(await xcap_client.delete(f"{LIST1}/entry[1]"), "cannot-delete")
    assert (await xcap_client.delete(f"{LIST1}/entry[2]")).status == 200


async def test_an_element_put_that_breaks_the_schema_changes_nothing(xcap_client: Client) -> None:
    etag = (await put_index(xcap_client)).headers["ETag"]
    # An entry without its required uri: inserted, then refused by the schema.
    response = await xcap_client.put(
        f"{LIST1}/entry[3]", data=b"<entry/>", headers={"Content-Type": EL_TYPE}
    )
    await conflict(response, "schema-validation-error")
    response = await xcap_client.put(
        f"{LIST1}/entry[@uri=%22sip:joe@example.com%22]/@uri",
        data=b"sip:bill@example.com",
        headers={"Content-Type": ATT_TYPE},
    )
    await conflict(response, "uniqueness-failure")
    assert (await xcap_client.get(ALICE_DOC)).headers["ETag"] == etag
