"""The counterpath dialect: every property of the vendor document, both directions."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from gateway.entry import NUMBER_FIELDS, Entry
from gateway.xcap import counterpath
from gateway.xcap.errors import XcapConflict

VENDOR_EXAMPLE = """<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists" xmlns:cp="counterpath:properties">
  <list name="Contact List">
    <entry>
      <display-name>Testentry</display-name>
      <cp:prop name="entry_id" value="534BB0BC2DDA09E2567C5D8D5B2C0120"/>
      <cp:prop name="given_name" value="Max"/>
      <cp:prop name="surname" value="Mustermann"/>
      <cp:prop name="profession" value="Dr."/>
      <cp:prop name="company" value="crashtestdummy"/>
      <cp:prop name="email_address" value="max@mustermann.de"/>
      <cp:prop name="comment" value="demonstrating xcap"/>
      <cp:prop name="sip_address" value="0042/1"/>
      <cp:prop name="mobile_number" value="0042/2"/>
      <cp:prop name="home_number" value="0042/3"/>
      <cp:prop name="home_number#1" value="0042/4"/>
      <cp:prop name="business_number" value="0042/5"/>
      <cp:prop name="business_number#1" value="0042/6"/>
      <cp:prop name="category" value="Arbeit"/>
    </entry>
  </list>
</resource-lists>
"""


def test_vendor_example_parses_every_property() -> None:
    (entry,) = counterpath.parse(VENDOR_EXAMPLE.encode())
    assert entry.entry_id == "534BB0BC2DDA09E2567C5D8D5B2C0120"
    assert entry.display_name == "Testentry"
    assert dict(entry.fields) == {
        "given_name": "Max",
        "surname": "Mustermann",
        "profession": "Dr.",
        "company": "crashtestdummy",
        "email_address": "max@mustermann.de",
        "comment": "demonstrating xcap",
        "sip_address": ("0042/1",),
        "mobile_number": ("0042/2",),
        "home_number": ("0042/3", "0042/4"),
        "business_number": ("0042/5", "0042/6"),
        "category": "Arbeit",  # not a known value: kept as sent
    }


def test_rendering_the_vendor_example_gives_back_the_vendor_bytes() -> None:
    # Our canonical form is the vendor's own layout, byte for byte.
    assert counterpath.render(counterpath.parse(VENDOR_EXAMPLE.encode())) == VENDOR_EXAMPLE.encode()


def test_extra_numbers_flags_and_unknown_props_survive_a_round_trip() -> None:
    entry = Entry(
        "0123456789ABCDEF0123456789ABCDEF",
        "Zoë & Co <HQ>",
        {
            "sip_address": ("100", "sip:zoe@example.com", "200"),
            "mobile_number": ("+49 170 1", "+49 170 2", "+49 170 3"),
            "category": "colleague",
            "category#1": "vip",
            "nickname": "Zo",
            "x-custom#7": "kept",
        },
    )
    body = counterpath.render([entry])
    assert b'name="sip_address#2" value="200"' in body
    assert b'name="category#1" value="vip"' in body
    assert counterpath.parse(body) == [entry]


def test_extra_numbers_are_ordered_by_their_index_not_document_order() -> None:
    body = VENDOR_EXAMPLE.replace(
        '<cp:prop name="home_number" value="0042/3"/>',
        '<cp:prop name="home_number#2" value="third"/><cp:prop name="home_number" value="0042/3"/>',
    ).encode()
    (entry,) = counterpath.parse(body)
    assert entry.fields["home_number"] == ("0042/3", "0042/4", "third")


def test_rendering_is_deterministic() -> None:
    entries = counterpath.parse(VENDOR_EXAMPLE.encode())
    assert counterpath.render(entries) == counterpath.render(list(entries))


def test_empty_values_are_dropped_and_a_missing_entry_id_is_empty() -> None:
    body = b"""<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"
        xmlns:cp="counterpath:properties"><list name="Contact List"><entry>
        <display-name> New </display-name><cp:prop name="comment" value=""/>
        <cp:prop name="mobile_number" value="123"/></entry></list></resource-lists>"""
    (entry,) = counterpath.parse(body)
    assert entry == Entry("", "New", {"mobile_number": ("123",)})


@pytest.mark.parametrize(
    ("body", "condition"),
    [
        (b"<resource-lists", "not-well-formed"),
        (b"", "not-well-formed"),
        (b"<a><b></a>", "not-well-formed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]>'
            b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">&x;</resource-lists>',
            "not-well-formed",
        ),
        (
            b"<resource-lists xmlns='urn:ietf:params:xml:ns:resource-lists'>\xff</resource-lists>",
            "not-utf-8",
        ),
        (b"<resource-lists/>", "schema-validation-error"),
        (b"<html xmlns='http://www.w3.org/1999/xhtml'/>", "schema-validation-error"),
        (
            b"<resource-lists xmlns='urn:ietf:params:xml:ns:resource-lists' "
            b"xmlns:cp='counterpath:properties'><list><entry><cp:prop value='1'/></entry>"
            b"</list></resource-lists>",
            "schema-validation-error",
        ),
    ],
)
def test_malformed_documents_raise_the_rfc4825_condition(body: bytes, condition: str) -> None:
    with pytest.raises(XcapConflict) as raised:
        counterpath.parse(body)
    assert raised.value.condition == condition
    error = etree.fromstring(raised.value.body())
    assert error.tag == "{urn:ietf:params:xml:ns:xcap-error}xcap-error"
    assert error[0].tag == f"{{urn:ietf:params:xml:ns:xcap-error}}{condition}"


def test_demo_rendering_is_well_formed_and_in_both_namespaces(tmp_path: Path) -> None:
    entries = [Entry(f"{i:032X}", f"Name {i}", {"surname": "S"}) for i in range(3)]
    root = etree.fromstring(counterpath.render(entries))
    assert root.nsmap == {None: counterpath.RL_NS, "cp": counterpath.CP_NS}
    assert [e.get("name") for e in root] == ["Contact List"]


_text = (
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)
    .map(str.strip)
    .filter(bool)
)
_field_values = st.fixed_dictionaries(
    {},
    optional={
        **{name: _text for name in ("given_name", "surname", "company", "comment", "category")},
        **{name: st.lists(_text, min_size=1, max_size=4).map(tuple) for name in NUMBER_FIELDS},
        "category#1": st.sampled_from(["vip", "dnd", "blocked"]),
    },
)


@given(
    entry_id=st.text(alphabet="0123456789ABCDEF", min_size=32, max_size=32),
    display_name=_text,
    fields=_field_values,
)
def test_any_entry_survives_render_then_parse(
    entry_id: str, display_name: str, fields: dict[str, object]
) -> None:
    entry = Entry(entry_id, display_name, fields)  # type: ignore[arg-type]
    assert counterpath.parse(counterpath.render([entry])) == [entry]
