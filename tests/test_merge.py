"""The three-way merge: each row of design.md's table, the conflict policies, and a
property: nothing the phone changed is lost unless a logged conflict overrode it, and
nothing the phone never saw is deleted."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.entry import Entry, changed_fields
from gateway.merge import (
    Conflict,
    Create,
    Delete,
    Plan,
    Policy,
    Update,
    edited_fields,
    merge,
    rebase,
    with_entry_ids,
)


def e(entry_id: str, name: str = "X", **fields: object) -> Entry:
    return Entry(entry_id, name, {k: v for k, v in fields.items() if v})  # type: ignore[misc]


def by_id(*entries: Entry) -> dict[str, Entry]:
    return {entry.entry_id: entry for entry in entries}


A = e("A", "Ann", company="Acme", mobile_number=("1",))
B = e("B", "Bob")


def test_theirs_only_is_created() -> None:
    new = e("N", "New")
    assert merge(by_id(A), [A, new], by_id(A)).changes == [Create(new)]


def test_deleted_on_the_phone_is_deleted_when_unchanged_upstream() -> None:
    assert merge(by_id(A, B), [A], by_id(A, B)).changes == [Delete(B)]


def test_deleted_on_the_phone_but_changed_upstream_is_kept() -> None:
    changed = e("B", "Bobby")
    assert merge(by_id(A, B), [A], by_id(A, changed)).changes == []


def test_an_edit_applies_the_fields_the_phone_changed() -> None:
    edited = e("A", "Ann", company="Acme Ltd", mobile_number=("1",))
    upstream = e("A", "Ann", company="Acme", mobile_number=("1",), profession="CEO")
    plan = merge(by_id(A), [edited], by_id(upstream))
    assert plan.changes == [
        Update(upstream, e("A", "Ann", company="Acme Ltd", mobile_number=("1",), profession="CEO"))
    ]
    assert plan.conflicts == []


def test_a_field_changed_on_both_sides_is_a_conflict_settled_by_policy() -> None:
    phone = e("A", "Ann", company="Phone Co", mobile_number=("1",))
    upstream = e("A", "Ann", company="Upstream Co", mobile_number=("1",))
    phone_wins = merge(by_id(A), [phone], by_id(upstream), "phone-wins")
    assert phone_wins.changes == [Update(upstream, phone)]
    assert phone_wins.conflicts == [Conflict("A", "company", "Phone Co", "Upstream Co", "phone")]
    upstream_wins = merge(by_id(A), [phone], by_id(upstream), "upstream-wins")
    assert upstream_wins.changes == []
    assert upstream_wins.conflicts[0].winner == "upstream"


def test_number_lists_merge_by_value_without_conflict() -> None:
    phone = e("A", "Ann", company="Acme", mobile_number=("1", "2"))  # added 2
    upstream = e("A", "Ann", company="Acme", mobile_number=("1", "3"))  # added 3
    plan = merge(by_id(A), [phone], by_id(upstream))
    assert plan.changes == [
        Update(upstream, e("A", "Ann", company="Acme", mobile_number=("1", "3", "2")))
    ]
    assert plan.conflicts == []


def test_unchanged_on_the_phone_does_nothing_even_if_changed_upstream() -> None:
    upstream = e("A", "Ann", company="Other")
    assert merge(by_id(A), [A], by_id(upstream)) == Plan()


def test_new_upstream_entries_are_never_deleted() -> None:
    assert merge(by_id(A), [A], by_id(A, B)).changes == []


def test_deleted_upstream_stays_deleted_unless_the_phone_edited_it() -> None:
    assert merge(by_id(A, B), [A, B], by_id(A)).changes == []
    edited = e("B", "Bob", company="New")
    assert merge(by_id(A, B), [A, edited], by_id(A), "phone-wins").changes == [Create(edited)]
    plan = merge(by_id(A, B), [A, edited], by_id(A), "upstream-wins")
    assert plan.changes == [] and plan.conflicts[0].field == "*"


def test_a_number_list_only_reordered_does_not_bring_back_an_entry_deleted_upstream() -> None:
    # Found by the stateful write-back test: whether the phone's reorder re-created the
    # entry depended on whether the gateway had synced the delete yet (with the delete not
    # yet seen, lists merge by value and a reorder is no change).
    before = e("B", "Bob", mobile_number=("1", "2"))
    reordered = e("B", "Bob", mobile_number=("2", "1"))
    policies: tuple[Policy, ...] = ("phone-wins", "upstream-wins")
    for policy in policies:
        assert merge(by_id(A, before), [A, reordered], by_id(A), policy) == Plan()
        assert merge(by_id(A, before), [A, reordered], by_id(A, before), policy) == Plan()


def test_ids_are_made_unique_without_dropping_entries() -> None:
    ids = iter(["N1", "N2", "N3"])
    fixed = with_entry_ids([e("a" * 32), e("A" * 32), e(""), e("ZZ")], lambda: next(ids))
    assert [x.entry_id for x in fixed] == ["A" * 32, "N1", "N2", "N3"]


@pytest.mark.parametrize(
    "hostile",
    [
        "../escaped",
        "/etc/passwd",
        "..\\x",
        "A" * 31 + "\x00",
        "A" * 32 + "\n",
        "A" * 33,
        "G" * 32,
        "x" * 5000,
        " " + "A" * 31,
    ],
)
def test_an_entry_id_that_is_not_32_hex_digits_is_replaced_and_the_entry_kept(
    hostile: str,
) -> None:
    (fixed,) = with_entry_ids([e(hostile, "New")])
    assert re.fullmatch("[0-9A-F]{32}", fixed.entry_id) and fixed.display_name == "New"
    assert merge(None, [fixed], {}).changes == [Create(fixed)]


def test_without_a_known_base_nothing_is_deleted_and_edits_still_apply() -> None:
    edited = e("A", "Ann", company="Edited")
    new = e("N", "New")
    plan = merge(None, [edited, new], by_id(A, B))
    assert plan.changes == [Update(A, edited), Create(new)]
    assert not any(isinstance(change, Delete) for change in plan.changes)
    assert merge(None, [], by_id(A, B)) == Plan()


def test_rebase_keeps_the_phones_change_and_settles_a_field_changed_since_by_policy() -> None:
    before = e("A", "Ann", company="Old", comment="c")
    after = e("A", "Ann", company="Phone", comment="c", profession="Boss")
    upstream = e("A", "Ann", company="Upstream", comment="changed upstream")
    phone, conflicts = rebase(before, after, upstream, "phone-wins")
    assert phone == after and [c.field for c in conflicts] == ["company"]
    kept, conflicts = rebase(before, after, upstream, "upstream-wins")
    assert kept.get("company") == "Old" and kept.get("profession") == "Boss"
    assert conflicts[0].winner == "upstream"
    same, conflicts = rebase(before, after, e("A", "Ann", company="Phone", comment="c"))
    assert same == after and conflicts == []


# --- the property ---------------------------------------------------------------------------

values = st.sampled_from(["", "x", "y", "z"])
numbers = st.lists(st.sampled_from(["1", "2", "3"]), unique=True, max_size=3).map(tuple)


@st.composite
def entry(draw: st.DrawFn, entry_id: str) -> Entry:
    return e(
        entry_id,
        draw(st.sampled_from(["N", "M"])),
        company=draw(values),
        comment=draw(values),
        mobile_number=draw(numbers),
    )


@st.composite
def documents(draw: st.DrawFn) -> tuple[dict[str, Entry], list[Entry], dict[str, Entry]]:
    ids = ["E1", "E2", "E3", "E4"]
    base = {i: draw(entry(i)) for i in ids if draw(st.booleans())}
    theirs = [
        draw(st.one_of(st.just(base[i]), entry(i))) if i in base else draw(entry(i))
        for i in ids
        if draw(st.booleans())
    ]
    ours = {
        i: draw(st.one_of(st.just(base[i]), entry(i))) if i in base else draw(entry(i))
        for i in ids
        if draw(st.booleans())
    }
    return base, theirs, ours


def apply(ours: Mapping[str, Entry], plan: Plan) -> dict[str, Entry]:
    result = dict(ours)
    for change in plan.changes:
        if isinstance(change, Create):
            result[change.entry.entry_id] = change.entry
        elif isinstance(change, Update):
            assert result[change.before.entry_id] == change.before
            result[change.after.entry_id] = change.after
        else:
            del result[change.before.entry_id]
    return result


@settings(max_examples=400)
@given(documents(), st.sampled_from(["phone-wins", "upstream-wins"]))
def test_nothing_the_phone_changed_is_lost_and_nothing_unseen_is_deleted(
    docs: tuple[dict[str, Entry], list[Entry], dict[str, Entry]], policy: str
) -> None:
    base, theirs, ours = docs
    plan = merge(base, theirs, ours, policy)  # type: ignore[arg-type]
    result = apply(ours, plan)
    overridden = {(c.entry_id, c.field) for c in plan.conflicts if c.winner == "upstream"}
    for mine in theirs:
        before = base.get(mine.entry_id)
        if before is None:
            if mine.entry_id not in ours:
                assert result[mine.entry_id] == mine  # created
            continue
        if mine.entry_id not in ours:
            # Edited, as the merge counts edits: a number list only reordered is none.
            if edited_fields(before, mine) and (mine.entry_id, "*") not in overridden:
                assert result[mine.entry_id] == mine  # resurrected: the phone edited it
            continue
        merged = result[mine.entry_id]
        for name in changed_fields(before, mine):
            if (mine.entry_id, name) in overridden:
                continue
            if name == "mobile_number":
                added = set(mine.get(name)) - set(before.get(name))
                removed = set(before.get(name)) - set(mine.get(name))
                assert added <= set(merged.get(name)) and not removed & set(merged.get(name))
            else:
                assert merged.get(name) == mine.get(name)
    # Nothing the phone never saw is deleted, nor anything it still has.
    their_ids = {mine.entry_id for mine in theirs}
    for entry_id in ours:
        if entry_id not in base or entry_id in their_ids:
            assert entry_id in result
        elif changed_fields(base[entry_id], ours[entry_id]):
            assert entry_id in result  # changed upstream since the phone saw it
