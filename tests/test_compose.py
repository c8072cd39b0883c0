"""Composition: priority order, folding duplicates across sources, number formats (and a
phone's edit mapped back through them), the cap, and re-rendering only on change."""

from __future__ import annotations

from pathlib import Path

from gateway.engine import Engine
from gateway.entry import Entry, apply_entry, contact_to_entry
from gateway.model import Contact, UserRef
from gateway.numbers import NumberFormat
from tests.conftest import ConfigFactory
from tests.dav.servers import vcard

ALICE = UserRef("alice@example.com")


def personal_book(tmp_path: Path) -> Path:
    folder = tmp_path / "personal"
    folder.mkdir()
    # Anna again (same email as in the demo cards), and someone only Alice knows.
    (folder / "anna.vcf").write_text(
        vcard(
            "p-anna",
            "Anna (private)",
            "EMAIL:anna.mueller@brandt-soehne.de",
            "TEL;TYPE=CELL:+49 171 9999999",
        )
    )
    (folder / "tom.vcf").write_text(vcard("p-tom", "Tom", "TEL;TYPE=CELL:+49 171 3344556"))
    return folder


async def compose(config: object) -> dict[str, Entry]:
    engine = Engine(config)  # type: ignore[arg-type]
    try:
        rendered = await engine.document("tbook", ALICE)
        return {e.display_name: e for e in rendered.entries.values()}
    finally:
        await engine.stop()


async def test_duplicates_across_sources_keep_the_earlier_sources_entry(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    extra = f'[sources.personal]\ntype = "vcard-dir"\npath = "{personal_book(tmp_path)}"\n'
    both = await compose(make_config(extra=extra, sources='["personal", "demo"]'))
    assert "Anna (private)" in both and "Anna Müller" in both  # no folding by default
    by_email = await compose(
        make_config(extra=extra, sources='["personal", "demo"]', document='dedupe_by = ["email"]')
    )
    assert "Anna (private)" in by_email and "Anna Müller" not in by_email
    assert len(by_email) == 29
    by_number = await compose(
        make_config(extra=extra, sources='["demo", "personal"]', document='dedupe_by = ["number"]')
    )
    # Tom's mobile is Anna Müller's: the earlier source (demo) wins.
    assert "Anna Müller" in by_number and "Tom" not in by_number


async def test_numbers_in_e164_and_national_with_an_outside_line_prefix(
    make_config: ConfigFactory,
) -> None:
    e164 = await compose(make_config(document='number_format = "e164"\ndefault_region = "DE"'))
    assert e164["Anna Müller"].fields["business_number"] == ("+493020941100", "+493020941101")
    national = await compose(
        make_config(
            document='number_format = "national"\ndefault_region = "DE"\noutside_line_prefix = "0"'
        )
    )
    anna = national["Anna Müller"]
    # "0" for the outside line, then the national number.
    assert anna.fields["business_number"] == ("003020941100", "003020941101")
    assert anna.fields["mobile_number"] == ("001713344556",)
    # Abroad: "0", then the international call prefix from Germany.
    assert national["Emma Thompson"].fields["business_number"] == ("00012125550134",)
    assert anna.fields["sip_address"] == ("anna.mueller@brandt-soehne.de",)  # never reformatted


def test_a_phones_number_edit_maps_back_through_the_format() -> None:
    view = NumberFormat("national", "DE", "0")
    stored = Contact(uid="x", mobile=("+49 171 3344556",), business=("+49 30 2094 1100", "4711"))
    shown = contact_to_entry(stored, None, view)
    assert shown.fields["business_number"] == ("003020941100", "4711")
    sent = Entry(
        shown.entry_id,
        shown.display_name,
        {
            **shown.fields,
            "business_number": ("003020941100", "0040123456"),
        },
    )
    result = apply_entry(stored, shown, sent, None, view)
    # The untouched number keeps its stored spelling; the new one is stored without the
    # outside-line prefix, internationally; the removed extension is gone.
    assert result.business == ("+49 30 2094 1100", "+49 40 123456")
    assert result.mobile == stored.mobile


async def test_the_cap_keeps_earlier_sources_and_the_render_is_cached(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    extra = f'[sources.personal]\ntype = "vcard-dir"\npath = "{personal_book(tmp_path)}"\n'
    engine = Engine(
        make_config(
            extra=extra,
            sources='["personal", "demo"]',
            document="max_entries = 5\nrequire_number = false",
        )
    )
    try:
        first = await engine.document("tbook", ALICE)
        assert len(first.entries) == 5
        assert {o.source for o in first.origins.values()} >= {"personal"}
        assert sum(o.source == "personal" for o in first.origins.values()) == 2
        # Same inputs: the same object, not a new rendering.
        assert await engine.document("tbook", UserRef("bob@example.com")) is first
        state = engine.sources.state("personal", ALICE)
        (tmp_path / "personal" / "new.vcf").write_text(vcard("p-new", "Aaron"))
        await state.refresh()
        second = await engine.document("tbook", ALICE)
        assert second is not first and "Aaron" in {e.display_name for e in second.entries.values()}
    finally:
        await engine.stop()


def test_config_requires_a_region_for_number_formats(make_config: ConfigFactory) -> None:
    import pytest

    from gateway.config import ConfigError

    with pytest.raises(ConfigError, match="needs default_region"):
        make_config(document='number_format = "e164"')
    with pytest.raises(ConfigError, match="not a region code"):
        make_config(document='number_format = "e164"\ndefault_region = "XX"')


async def test_a_phones_change_recomposes_only_the_documents_of_its_source(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    extra = (
        f'[sources.personal]\ntype = "vcard-dir"\npath = "{personal_book(tmp_path)}"\n'
        '[documents.private]\nname = "private.xml"\nsources = ["personal"]\n'
        "require_number = false\n"
    )
    engine = Engine(make_config(extra=extra))
    await engine.start()
    try:
        private = await engine.document("private", ALICE)
        tbook = await engine.document("tbook", ALICE)
        entries = list(tbook.entries.values())
        edited = [
            Entry(
                entries[0].entry_id, entries[0].display_name, {**entries[0].fields, "comment": "x"}
            ),
            *entries[1:],
        ]
        await engine.put("tbook", ALICE, edited, "desk", None)
        assert await engine.document("private", ALICE) is private  # not composed again
        assert await engine.document("tbook", ALICE) is not tbook
        assert await engine.outbox.drained()
        assert await engine.document("private", ALICE) is private
    finally:
        await engine.stop()
