"""RFC 4825 node selectors (§6.3): parsing, and selecting, inserting, replacing and
deleting the node one selects in an lxml tree.

    element-selector  = step *( "/" step )
    step              = NameOrAny [ "[" position "]" ] [ "[@" att "=" value "]" ]
    terminal-selector = "@" att-name | "namespace::*"

The first step names the document's root. Positions count siblings of the step's name
(of any name for "*"), as in XPath. Unprefixed element names are in the application's
default namespace; prefixes come from the request's xmlns() query.

A selector is bounded (MAX_SELECTOR_LENGTH characters, MAX_STEPS steps: far beyond what
any document served here is deep; SelectorTooLarge, answered 400) and evaluated in one
walk from the root, so its cost grows with its steps, never with their square.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from lxml import etree

from gateway.xcap.errors import XcapConflict
from gateway.xcap.xml import parser, quote_attribute

#: A name as the grammar reads it; whether XML allows it is checked after (_check_name):
#: Python's \w holds characters no XML name may (U+00B2 "²", U+00BD "½").
_NCNAME = r"[^\W\d][\w.\-\u00b7\u0300-\u036f\u203f\u2040]*"
_QNAME = rf"{_NCNAME}(?::{_NCNAME})?"
_STEP = re.compile(
    rf"""^(?P<name>\*|{_QNAME})
        (?:\[(?P<pos>[1-9][0-9]*)\])?
        (?:\[@(?P<att>{_QNAME})=(?P<q>["'])(?P<val>.*?)(?P=q)\])?$""",
    re.VERBOSE,
)
_ATTRIBUTE = re.compile(rf"^@(?P<att>{_QNAME})$")
#: No document holds a billion siblings: a longer position selects nothing (and int()
#: refuses strings of more than 4,300 digits).
MAX_POSITION_DIGITS = 9
#: Characters of a node selector (percent-decoded; the terminal selector included). Real
#: ones are far shorter (a list name and an entry URI in predicates: a few hundred).
MAX_SELECTOR_LENGTH = 6000
#: Element steps of a node selector: the documents served here are a few levels deep.
MAX_STEPS = 32


class BadSelector(Exception):
    """Not a node selector (answered 404: it selects nothing)."""


class SelectorTooLarge(Exception):
    """A node selector beyond MAX_SELECTOR_LENGTH or MAX_STEPS (answered 400: refused
    before any work that grows with it)."""


@dataclass(frozen=True)
class Step:
    tag: str | None  # Clark name, or None for "*"
    position: int | None
    attribute: str | None  # Clark name of the attribute tested
    value: str | None


@dataclass(frozen=True)
class Selector:
    steps: tuple[Step, ...]
    attribute: str | None = None  # terminal attribute selector (Clark name)
    namespaces: bool = False  # terminal namespace::*
    texts: tuple[str, ...] = ()  # the steps as written, for error documents

    @property
    def parent(self) -> Selector:
        return Selector(self.steps[:-1], texts=self.texts[:-1])


def parse_selector(text: str, prefixes: Mapping[str, str], default_ns: str) -> Selector:
    if len(text) > MAX_SELECTOR_LENGTH:
        raise SelectorTooLarge(
            f"a node selector is at most {MAX_SELECTOR_LENGTH} characters, not {len(text)}"
        )
    parts = _split(text)
    attribute, namespaces = None, False
    if parts and parts[-1] == "namespace::*":
        parts, namespaces = parts[:-1], True
    elif parts and (match := _ATTRIBUTE.match(parts[-1])):
        parts, attribute = parts[:-1], _qname(match["att"], prefixes, None)
    if len(parts) > MAX_STEPS:
        raise SelectorTooLarge(f"a node selector has at most {MAX_STEPS} steps, not {len(parts)}")
    steps = []
    for part in parts:
        match = _STEP.match(part)
        if match is None:
            raise BadSelector(f"not a step: {part!r}")
        if match["pos"] and len(match["pos"]) > MAX_POSITION_DIGITS:
            raise BadSelector(f"position {match['pos'][:20]}… is out of range")
        steps.append(
            Step(
                None if match["name"] == "*" else _qname(match["name"], prefixes, default_ns),
                int(match["pos"]) if match["pos"] else None,
                _qname(match["att"], prefixes, None) if match["att"] else None,
                match["val"],
            )
        )
    if not steps:
        raise BadSelector("a node selector names at least the root element")
    return Selector(tuple(steps), attribute, namespaces, tuple(parts))


def _split(text: str) -> list[str]:
    """Split on "/" outside quoted attribute values."""
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    for char in text.strip("/"):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "/":
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p]


def _qname(name: str, prefixes: Mapping[str, str], default_ns: str | None) -> str:
    """The Clark name of `name`. BadSelector when XML cannot hold it, since no node of a
    (well-formed) document then has it: a name that is no XML name, or a prefix bound to
    what is no namespace name libxml2 reads back."""
    prefix, _, local = name.rpartition(":")
    for part in (prefix, local) if prefix else (local,):
        if not is_ncname(part):
            raise BadSelector(f"{part!r} is not an XML name")
    if prefix:
        if prefix not in prefixes:
            raise BadSelector(f"prefix {prefix!r} is not bound by an xmlns() in the query")
        if not is_namespace(prefixes[prefix]):
            raise BadSelector(f"prefix {prefix!r} is bound to what is not a namespace name")
        return f"{{{prefixes[prefix]}}}{local}"
    return f"{{{default_ns}}}{local}" if default_ns else local


@lru_cache(maxsize=1024)
def is_ncname(name: str) -> bool:
    """Whether `name` is an XML name without a colon, as both lxml (building elements and
    attributes) and libxml2 (reading them back) accept it."""
    if not name or ":" in name:
        return False
    try:
        etree.QName(None, name)
        root = etree.fromstring(f"<{name}/>".encode(), parser())
    except (ValueError, etree.XMLSyntaxError):  # UnicodeEncodeError is a ValueError
        return False
    return bool(root.tag == name and not root.attrib)


@lru_cache(maxsize=1024)
def is_namespace(uri: str) -> bool:
    """Whether `uri` is a namespace name lxml can put on a node and libxml2 reads back from
    a serialized document (it refuses "urn:x y", "%", "{x", controls, NUL, U+FFFE, ...)."""
    if not uri or "{" in uri or "}" in uri:  # "}" ends lxml's Clark namespace
        return False
    clark = f"{{{uri}}}x"
    try:
        etree.QName(uri, "x")
        etree.Element("a").set(clark, "")
        root = etree.fromstring(f"<p:x xmlns:p={quote_attribute(uri)}/>".encode(), parser())
    except (ValueError, etree.XMLSyntaxError):
        return False
    return bool(root.tag == clark)


def _candidates(parent: etree._Element, step: Step) -> list[etree._Element]:
    named = [
        c for c in parent if isinstance(c.tag, str) and (step.tag is None or c.tag == step.tag)
    ]
    if step.position is not None:
        named = named[step.position - 1 : step.position]
    if step.attribute is not None:
        named = [c for c in named if attribute_of(c, step.attribute) == step.value]
    return named


def attribute_of(element: etree._Element, name: str) -> str | None:
    """The value of attribute `name`; None also when lxml refuses the name (no node of a
    well-formed document can have it)."""
    try:
        return element.get(name)
    except ValueError:
        return None


def select(root: etree._Element, selector: Selector) -> list[etree._Element]:
    """The elements the element part of `selector` selects (a selector selects a node
    only when exactly one matches)."""
    last: list[etree._Element] = []
    for matches in _walk(root, selector.steps):
        last = matches
    return last


def _walk(root: etree._Element, steps: Sequence[Step]) -> Iterator[list[etree._Element]]:
    """What each prefix of `steps` selects, in one pass from the root: the elements the
    first step selects, then the first two, and so on; it ends early (with []) once a
    prefix selects nothing, as every longer one does too."""
    if not steps:
        return
    # The root is matched like the only child of the document node.
    matches = [root] if _candidates_root(root, steps[0]) else []
    yield matches
    for step in steps[1:]:
        if not matches:
            return
        matches = [child for element in matches for child in _candidates(element, step)]
        yield matches


def _candidates_root(root: etree._Element, step: Step) -> bool:
    return (
        (step.tag is None or root.tag == step.tag)
        and step.position in (None, 1)
        and (step.attribute is None or attribute_of(root, step.attribute) == step.value)
    )


def select_one(root: etree._Element, selector: Selector) -> etree._Element | None:
    found = select(root, selector)
    return found[0] if len(found) == 1 else None


def put_element(root: etree._Element, selector: Selector, new: etree._Element) -> bool:
    """Replace the selected element or insert `new` where the selector points; True when
    inserted. Raises XcapConflict (no-parent, cannot-insert)."""
    if len(selector.steps) == 1:
        raise XcapConflict("cannot-insert", "replace the root element with a document PUT")
    step = selector.steps[-1]
    parents = select(root, selector.parent)
    if len(parents) != 1:
        raise no_parent(root, selector)
    parent = parents[0]
    if (step.tag is not None and new.tag != step.tag) or (
        step.attribute is not None and attribute_of(new, step.attribute) != step.value
    ):
        raise XcapConflict("cannot-insert", "the element does not match the node selector")
    existing = _candidates(parent, step)
    if len(existing) == 1:
        # The whitespace after the old element is the document's layout, not the element's.
        new.tail = existing[0].tail
        parent.replace(existing[0], new)
        return False
    if existing:
        raise XcapConflict("cannot-insert", "the node selector selects more than one element")
    siblings = [
        c for c in parent if isinstance(c.tag, str) and (step.tag is None or c.tag == step.tag)
    ]
    if step.position is not None and step.position != len(siblings) + 1:
        raise XcapConflict("cannot-insert", f"there is no position {step.position} to insert at")
    if siblings:
        _add_after(siblings[-1], new)
    else:
        parent.append(new)
    if select_one(root, selector) is not new:
        new.getparent().remove(new)  # type: ignore[union-attr]
        raise XcapConflict("cannot-insert", "after insertion the node selector would not select it")
    return True


def _add_after(sibling: etree._Element, new: etree._Element) -> None:
    """Insert `new` right after `sibling`, indented as `sibling` is when the text before it
    is only whitespace (lxml would put it after `sibling`'s tail)."""
    previous = sibling.getprevious()
    before = sibling.getparent().text if previous is None else previous.tail  # type: ignore[union-attr]
    if before is not None and not before.strip():
        new.tail, sibling.tail = sibling.tail, before
    sibling.addnext(new)


def delete_element(root: etree._Element, selector: Selector) -> None:
    """Remove the selected element. Raises LookupError if none, XcapConflict cannot-delete
    when afterwards the selector would select another element."""
    target = select_one(root, selector)
    if target is None or target is root:
        raise LookupError("nothing selected")
    parent = target.getparent()
    assert parent is not None
    index = parent.index(target)
    parent.remove(target)
    if select(root, selector):
        parent.insert(index, target)
        raise XcapConflict(
            "cannot-delete", "afterwards the node selector would select another element"
        )


def no_parent(root: etree._Element, selector: Selector) -> XcapConflict:
    """no-parent, naming the deepest existing ancestor (as a node selector): the longest
    proper prefix of the selector that selects exactly one element, found in one walk."""
    depth = 0
    for size, matches in enumerate(_walk(root, selector.steps[:-1]), start=1):
        if len(matches) == 1:
            depth = size
    return XcapConflict(
        "no-parent",
        "the parent of the element does not exist",
        ancestor="/".join(selector.texts[:depth]),
    )
