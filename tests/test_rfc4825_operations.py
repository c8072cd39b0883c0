"""RFC 4825 §7 and §8: documents, elements and attributes created, fetched, replaced and
deleted, with their MIME types; and the same operations on a directory document."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import drained
from tests.xcap.support import ALICE_DOC, ATT_TYPE, EL_TYPE, INDEX, RL_TYPE, Client, put_index

FRIENDS = f"{ALICE_DOC}/~~/resource-lists/list[@name=%22friends%22]"


async def test_get_of_put_returns_the_same_bytes_and_201_then_200(xcap_client: Client) -> None:
    created = await put_index(xcap_client)
    assert created.status == 201 and created.headers["ETag"]
    fetched = await xcap_client.get(ALICE_DOC)
    assert fetched.status == 200 and await fetched.read() == INDEX
    assert fetched.headers["Content-Type"] == RL_TYPE
    again = await put_index(xcap_client, INDEX.replace(b"Bill", b"William"))
    assert again.status == 200
    assert await (await xcap_client.get(ALICE_DOC)).read() == INDEX.replace(b"Bill", b"William")


async def test_delete_of_a_document(xcap_client: Client) -> None:
    await put_index(xcap_client)
    assert (await xcap_client.delete(ALICE_DOC)).status == 200
    assert (await xcap_client.get(ALICE_DOC)).status == 404
    assert (await xcap_client.delete(ALICE_DOC)).status == 404


async def test_element_insert_replace_delete(xcap_client: Client) -> None:
    await put_index(xcap_client)
    url = f"{FRIENDS}/entry[@uri=%22sip:ann@example.com%22]"
    body = b'<entry uri="sip:ann@example.com"><display-name>Ann</display-name></entry>'
    inserted = await xcap_client.put(url, data=body, headers={"Content-Type": EL_TYPE})
    assert inserted.status == 201
    # As it stands in the document: no namespace declaration added from its ancestors (§8.3).
    assert await (await xcap_client.get(url)).read() == body
    replaced = await xcap_client.put(
        url, data=body.replace(b"Ann", b"Annie"), headers={"Content-Type": EL_TYPE}
    )
    assert replaced.status == 200 and replaced.headers["ETag"] != inserted.headers["ETag"]
    assert (await xcap_client.delete(url)).status == 200
    assert (await xcap_client.get(url)).status == 404
    assert (await xcap_client.delete(url)).status == 404


async def test_attribute_put_get_delete(xcap_client: Client) -> None:
    await put_index(xcap_client)
    url = f"{FRIENDS}/@name"
    response = await xcap_client.put(url, data=b"pals", headers={"Content-Type": ATT_TYPE})
    assert response.status == 200
    renamed = f"{ALICE_DOC}/~~/resource-lists/list[@name=%22pals%22]/@name"
    assert await (await xcap_client.get(renamed)).read() == b"pals"
    # The schema allows extra attributes from other namespaces.
    new_attribute = f"{ALICE_DOC}/~~/resource-lists/list[2]/@x:note?xmlns(x=urn:example:notes)"
    created = await xcap_client.put(
        new_attribute, data=b"a &amp; b", headers={"Content-Type": ATT_TYPE}
    )
    assert created.status == 201
    assert await (await xcap_client.get(new_attribute)).read() == b"a &amp; b"
    assert (await xcap_client.delete(new_attribute)).status == 200
    assert (await xcap_client.get(new_attribute)).status == 404


async def test_wrong_mime_types_are_415(xcap_client: Client) -> None:
    assert (
        await xcap_client.put(ALICE_DOC, data=INDEX, headers={"Content-Type": "application/xml"})
    ).status == 415
    await put_index(xcap_client)
    element = f"{FRIENDS}/entry[1]"
    assert (
        await xcap_client.put(
            element, data=b"<entry uri='sip:x@y'/>", headers={"Content-Type": RL_TYPE}
        )
    ).status == 415
    assert (
        await xcap_client.put(f"{FRIENDS}/@name", data=b"x", headers={"Content-Type": EL_TYPE})
    ).status == 415


async def test_methods_that_do_not_apply_are_405_with_allow(xcap_client: Client) -> None:
    await put_index(xcap_client)
    response = await xcap_client.post(ALICE_DOC, data=b"")
    assert response.status == 405 and "PUT" in response.headers["Allow"]
    namespaces = f"{FRIENDS}/namespace::*"
    response = await xcap_client.delete(namespaces)
    assert response.status == 405 and response.headers["Allow"] == "GET,HEAD"
    directory = await xcap_client.delete("/users/sip:alice@example.com/tbook.xml")
    assert directory.status == 405 and "DELETE" not in directory.headers["Allow"]


async def test_an_element_put_on_the_directory_edits_that_contact(
    xcap_client: Client, contacts_dir: Path
) -> None:
    base = "/users/sip:alice@example.com/tbook.xml"
    document = await (await xcap_client.get(base)).read()
    entry_id = document.split(
        b'<display-name>Lars Petersen</display-name>\n      <cp:prop name="entry_id" value="'
    )[1][:32].decode()
    url = f"{base}/~~/resource-lists/list/entry[cp:prop/@value=%22{entry_id}%22]"
    # A by-attribute step on a child is not a node selector: select by position instead.
    assert (await xcap_client.get(url)).status == 404
    entries = document.count(b"<entry>")
    position = document[: document.index(b"<display-name>Lars Petersen")].count(b"<entry>")
    url = f"{base}/~~/resource-lists/list/entry[{position}]/display-name"
    before = await xcap_client.get(url)  # read from the cached tree of this version
    assert await before.read() == b"<display-name>Lars Petersen</display-name>"
    response = await xcap_client.put(
        url,
        data=b"<display-name>Lars P. Petersen</display-name>",
        headers={"Content-Type": EL_TYPE},
    )
    assert response.status == 200, await response.text()
    await drained(xcap_client)
    assert "FN:Lars P. Petersen" in (contacts_dir / "lars.petersen.vcf").read_text()
    # The new version's element, not the cached tree of the old one.
    after = await xcap_client.get(url)
    assert await after.read() == b"<display-name>Lars P. Petersen</display-name>"
    assert after.headers["ETag"] != before.headers["ETag"]
    assert (await (await xcap_client.get(base)).read()).count(b"<entry>") == entries
    attribute = f"{base}/~~/resource-lists/list/entry[{position}]/cp:prop[@name=%22comment%22]/@value?xmlns(cp=counterpath:properties)"
    assert (await xcap_client.get(attribute)).status == 404  # Lars has no comment yet
