"""RFC 4825 §7.11 / §8.5: one ETag per document, new on every change, and preconditions
checked before anything else."""

from __future__ import annotations

from tests.xcap.support import ALICE_DOC, EL_TYPE, INDEX, Client, put_index


async def test_every_200_and_201_carries_the_documents_etag(xcap_client: Client) -> None:
    created = await put_index(xcap_client)
    etag = created.headers["ETag"]
    assert (await xcap_client.get(ALICE_DOC)).headers["ETag"] == etag
    element = await xcap_client.get(f"{ALICE_DOC}/~~/resource-lists/list[1]")
    assert element.headers["ETag"] == etag
    changed = await put_index(xcap_client, INDEX.replace(b"Joe", b"Jo"))
    assert changed.headers["ETag"] not in ("", etag)


async def test_if_none_match_gives_304_on_get_and_412_on_put(xcap_client: Client) -> None:
    etag = (await put_index(xcap_client)).headers["ETag"]
    assert (await xcap_client.get(ALICE_DOC, headers={"If-None-Match": etag})).status == 304
    assert (await xcap_client.get(ALICE_DOC, headers={"If-None-Match": "*"})).status == 304
    assert (
        await xcap_client.get(
            f"{ALICE_DOC}/~~/resource-lists/list[1]", headers={"If-None-Match": etag}
        )
    ).status == 304
    # Creating only if absent: the document exists, so 412 even with the same body.
    assert (await put_index(xcap_client, **{"If-None-Match": "*"})).status == 412


async def test_if_match_guards_every_write(xcap_client: Client) -> None:
    etag = (await put_index(xcap_client)).headers["ETag"]
    stale = '"not-the-current-etag"'
    assert (await put_index(xcap_client, **{"If-Match": stale})).status == 412
    # Also when the body equals what is stored.
    assert (await put_index(xcap_client, INDEX, **{"If-Match": stale})).status == 412
    element = f"{ALICE_DOC}/~~/resource-lists/list[1]/entry[1]"
    assert (await xcap_client.delete(element, headers={"If-Match": stale})).status == 412
    assert (
        await xcap_client.put(
            element,
            data=b'<entry uri="sip:z@example.com"/>',
            headers={"Content-Type": EL_TYPE, "If-Match": stale},
        )
    ).status == 412
    assert (await xcap_client.get(ALICE_DOC)).headers["ETag"] == etag  # nothing changed
    assert (await put_index(xcap_client, **{"If-Match": etag})).status == 200
    assert (await put_index(xcap_client, **{"If-Match": "*"})).status == 200


async def test_if_match_on_a_missing_document_is_412(xcap_client: Client) -> None:
    assert (await put_index(xcap_client, **{"If-Match": "*"})).status == 412
    assert (await xcap_client.get(ALICE_DOC, headers={"If-Match": '"x"'})).status == 412
