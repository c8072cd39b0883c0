"""Fuzzing the parsers a client reaches: whatever the bytes, the answer is a document or a
clean RFC 4825 condition, never another exception."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.xcap import counterpath, resourcelists
from gateway.xcap.errors import XcapConflict
from gateway.xcap.nodes import attribute_value, fragment
from gateway.xcap.selector import BadSelector, parse_selector
from gateway.xcap.xml import parse_document

TOKENS = st.sampled_from(
    [
        "<",
        ">",
        "/",
        "=",
        '"',
        "'",
        "&",
        ";",
        "<!DOCTYPE x>",
        "<!ENTITY e 'x'>",
        "&e;",
        "<![CDATA[",
        "]]>",
        "<?xml version='1.0'?>",
        "<resource-lists",
        ' xmlns="urn:ietf:params:xml:ns:resource-lists"',
        ' xmlns:cp="counterpath:properties"',
        "<list",
        "<entry",
        "<cp:prop",
        ' name="entry_id"',
        ' value="1"',
        "<display-name>",
        "</display-name>",
        "</entry>",
        "</list>",
        "</resource-lists>",
        "\x00",
        "\xff",
        "é",
        "\u202e",
        " ",
    ]
)
SETTINGS = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)


@SETTINGS
@given(
    st.one_of(
        st.binary(max_size=400),
        st.lists(TOKENS, max_size=40).map(lambda t: "".join(t).encode("utf-8", "surrogatepass")),
    )
)
def test_the_directory_parser(body: bytes) -> None:
    try:
        entries = counterpath.parse(body)
    except XcapConflict:
        return
    assert counterpath.parse(counterpath.render(entries)) == entries


@SETTINGS
@given(st.lists(TOKENS, max_size=40).map("".join))
def test_the_resource_lists_rules(text: str) -> None:
    with contextlib.suppress(XcapConflict):
        resourcelists.validate(parse_document(text.encode("utf-8", "surrogatepass")))


@SETTINGS
@given(st.text(max_size=120))
def test_node_selectors(text: str) -> None:
    with contextlib.suppress(BadSelector):
        parse_selector(text, {"r": resourcelists.NAMESPACE}, resourcelists.NAMESPACE)


@SETTINGS
@given(st.binary(max_size=200))
def test_fragments_and_attribute_values(body: bytes) -> None:
    for parse in (lambda b: fragment(b, {None: resourcelists.NAMESPACE}), attribute_value):
        with contextlib.suppress(XcapConflict):
            parse(body)
