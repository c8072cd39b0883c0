"""Contacts as entries, and a phone's edit applied back field by field."""

from __future__ import annotations

from gateway.entry import apply_entry, changed_fields, contact_to_entry
from gateway.model import Contact, entry_id_for

ANNA = Contact(
    uid="anna",
    source="people",
    display_name="Anna Müller",
    given_name="Anna",
    surname="Müller",
    emails=("anna@example.com", "anna.private@example.com"),
    mobile=("+49 171 1",),
    business=("+49 30 1", "+49 171 1", "+49 30 2"),
    categories=("Customers", "friend"),
    extra=(("nickname", "Anni"),),
)


def test_entry_shows_first_email_known_category_and_each_number_once() -> None:
    entry = contact_to_entry(ANNA, "work")
    assert entry.entry_id == entry_id_for("people", "anna")
    assert len(entry.entry_id) == 32 and entry.entry_id == entry.entry_id.upper()
    assert entry.fields["email_address"] == "anna@example.com"
    assert entry.fields["mobile_number"] == ("+49 171 1",)
    assert entry.fields["business_number"] == ("+49 30 1", "+49 30 2")  # duplicate left out
    assert entry.fields["category"] == "friend"
    assert entry.fields["nickname"] == "Anni"


def test_default_category_and_derived_display_name() -> None:
    entry = contact_to_entry(Contact(uid="x", given_name="Bo", surname="Li"), "work")
    assert (entry.display_name, entry.fields["category"]) == ("Bo Li", "work")
    entry = contact_to_entry(Contact(uid="y", mobile=("123",)), None)
    assert entry.display_name == "123" and "category" not in entry.fields


def test_apply_changes_only_what_the_phone_changed() -> None:
    served = contact_to_entry(ANNA, "work")
    fields = dict(served.fields)
    fields["business_number"] = ("+49 30 1", "+49 30 9")  # one number replaced
    fields["email_address"] = "anna@new.example"
    fields["category#1"] = "vip"
    sent = served.__class__(served.entry_id, "Anna M.", fields)
    assert changed_fields(served, sent) == {
        "display_name",
        "business_number",
        "email_address",
        "category#1",
    }
    result = apply_entry(ANNA, served, sent, "work")
    assert result.display_name == "Anna M."
    # The hidden duplicate "+49 171 1" stays; only "+49 30 2" was replaced.
    assert result.business == ("+49 30 1", "+49 171 1", "+49 30 9")
    assert result.emails == ("anna@new.example", "anna.private@example.com")
    assert result.vip and not result.dnd
    assert result.categories == ANNA.categories
    assert result.extra == ANNA.extra and result.mobile == ANNA.mobile


def test_category_edit_replaces_the_shown_category_only() -> None:
    served = contact_to_entry(ANNA, "work")
    sent = served.__class__(
        served.entry_id, served.display_name, {**served.fields, "category": "family"}
    )
    assert apply_entry(ANNA, served, sent, "work").categories == ("family", "Customers")


def test_unknown_flag_and_removed_prop_are_kept_and_removed() -> None:
    served = contact_to_entry(ANNA, "work")
    fields = {k: v for k, v in served.fields.items() if k != "nickname"}
    fields["category#1"] = "blocked"
    result = apply_entry(ANNA, served, served.__class__(served.entry_id, "Anna Müller", fields))
    assert result.extra == (("category#1", "blocked"),)
    assert contact_to_entry(result).fields["category#1"] == "blocked"


def test_new_entry_becomes_a_contact_with_the_phones_id() -> None:
    from gateway.entry import Entry

    entry = Entry(
        "534BB0BC2DDA09E2567C5D8D5B2C0120",
        "Max",
        {
            "given_name": "Max",
            "home_number": ("1", "2"),
            "category": "family",
            "category#1": "dnd",
            "email_address": "max@example.com",
        },
    )
    contact = apply_entry(Contact(uid="", source="p", entry_id=entry.entry_id), None, entry)
    assert contact.home == ("1", "2") and contact.dnd and contact.categories == ("family",)
    assert contact.emails == ("max@example.com",)
    assert contact_to_entry(contact) == entry
