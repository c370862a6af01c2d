"""Editing a libvirt domain XML in place, so that diffs stay minimal.

A :class:`Document` keeps what lxml cannot: the text before and after the
root element (XML declaration, comments) verbatim and the quote style of
the attributes (libvirt writes ``'``, lxml ``"``). Whitespace and comments
inside the root are kept by the parser.

The helpers create elements where libvirt's schema order puts them, indent
them like their siblings, and, when they remove an element, leave the
whitespace around it as if it had never been there. Element orders are
tuples of tag names in libvirt's ``dumpxml`` order; a new element goes
after the last sibling that comes before it (or is of its kind) in that
order, so comments in front of the following element stay with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from kvmrt.errors import DomainXmlError

_PARSER = etree.XMLParser(
    remove_blank_text=False, remove_comments=False, remove_pis=False,
    resolve_entities=False, no_network=True, strip_cdata=False,
)
_DECLARATION = re.compile(r"<\?xml\s[^>]*\?>")
_PROLOG = re.compile(
    r"(?:\s|<\?(?:(?!\?>).)*\?>|<!--(?:(?!-->).)*-->|<!DOCTYPE(?:[^\[>]|\[.*?\])*>)*", re.S
)
_EPILOG = re.compile(r"(?:\s|<\?(?:(?!\?>).)*\?>|<!--(?:(?!-->).)*-->)*\Z", re.S)
# Markup in document order; group "tag" is a start tag, "attrs" its attributes.
_MARKUP = re.compile(
    r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<![^>]*>|</[^>]*>"
    r"|<(?P<tag>[^\s/>]+)(?P<attrs>(?:\s+[^\s=/>]+\s*=\s*(?:'[^']*'|\"[^\"]*\"))*)\s*/?>",
    re.S,
)
_ATTRIBUTE = re.compile(r"(\s+)([^\s=/>]+)(\s*=\s*)('[^']*'|\"[^\"]*\")")
Quotes = dict[str, str]  # attribute name as written → its quote character


@dataclass
class Document:
    """A parsed domain XML and what is needed to write it back as it was:
    the text around the root element, and the quote character of each
    attribute (lxml would write every one with ``"``). New attributes get
    the quote of the document's first one (``'`` in libvirt's XML)."""

    root: etree._Element
    prolog: str
    epilog: str
    quotes: dict[etree._Element, Quotes]
    default_quote: str

    def serialize(self) -> str:
        body = etree.tostring(self.root, encoding="unicode", with_tail=False)
        elements = iter(_elements(self.root))

        def start_tag(markup: re.Match) -> str:
            if markup.group("tag") is None:
                return markup.group(0)
            source = self.quotes.get(next(elements), {})
            return _requoted(markup, source, self.default_quote)

        return self.prolog + _MARKUP.sub(start_tag, body) + self.epilog


def parse_domain(xml: str) -> Document:
    """Parse a domain XML; :class:`DomainXmlError` when it is not one."""
    if not isinstance(xml, str):
        raise DomainXmlError(f"expected the XML as text, got {type(xml).__name__}")
    declaration = _DECLARATION.match(xml)
    start = declaration.end() if declaration else 0
    try:
        root = etree.fromstring(xml[start:], _PARSER)
    except etree.XMLSyntaxError as exc:
        line = exc.lineno + xml[:start].count("\n") if exc.lineno else None
        raise DomainXmlError(f"not well-formed XML: {exc.msg}", line) from exc
    if root.tag != "domain":
        raise DomainXmlError(f"the root element is <{_name(root)}>, not <domain>", root.sourceline)
    prolog = _PROLOG.match(xml, start).group(0)
    epilog = _EPILOG.search(xml).group(0)
    quotes = _source_quotes(xml[start + len(prolog):len(xml) - len(epilog)], root)
    first = next((q for qs in quotes.values() for q in qs.values()), "'")
    return Document(root, xml[:start] + prolog, epilog, quotes, first)


def _elements(root: etree._Element) -> list[etree._Element]:
    return [el for el in root.iter() if isinstance(el.tag, str)]


def _source_quotes(body: str, root: etree._Element) -> dict[etree._Element, Quotes]:
    """The quote of every attribute of every element, read from the source.

    Start tags and elements are both in document order; when they do not
    pair up (entities that expand to elements), no quotes are known.
    """
    tags = [m.group("attrs") for m in _MARKUP.finditer(body) if m.group("tag") is not None]
    elements = _elements(root)
    if len(tags) != len(elements):
        return {}
    return {el: {a.group(2): a.group(4)[0] for a in _ATTRIBUTE.finditer(attrs)}
            for el, attrs in zip(elements, tags)}


def _requoted(tag: re.Match, source: Quotes, default: str) -> str:
    """A start tag as lxml wrote it (``name="value"``, namespace declarations
    first), with the attributes in their source order and quotes."""
    attributes = list(_ATTRIBUTE.finditer(tag.group("attrs")))
    order = {name: i for i, name in enumerate(source)}
    attributes.sort(key=lambda a: order.get(a.group(2), len(order)))
    written = "".join(_quoted(a, source.get(a.group(2), default)) for a in attributes)
    start, end = tag.span("attrs")
    whole = tag.group(0)
    return whole[:start - tag.start()] + written + whole[end - tag.start():]


def _quoted(attribute: re.Match, quote: str) -> str:
    """One attribute as lxml wrote it (`` name="value"``), with ``quote``."""
    space, name, equals, value = attribute.groups()
    if quote == "'":
        value = "'" + value[1:-1].replace("'", "&apos;") + "'"
    return f"{space}{name}{equals}{value}"


def _name(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else str(el.tag)


# -- whitespace ---------------------------------------------------------------
def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


def _space_before(el: etree._Element) -> str | None:
    prev = el.getprevious()
    if prev is not None:
        return prev.tail
    parent = el.getparent()
    return parent.text if parent is not None else "\n"


def indent_of(el: etree._Element) -> str | None:
    """``"\\n" + indentation`` of ``el``; None in a document without line breaks."""
    space = _space_before(el)
    if space is None or "\n" not in space or not _blank(space):
        return None
    return "\n" + space.rsplit("\n", 1)[1]


def indent_unit(el: etree._Element) -> str:
    """The indentation step of the document (two spaces in libvirt's XML)."""
    root = el.getroottree().getroot()
    inner = root.text or ""
    if _blank(inner) and "\n" in inner and inner.rsplit("\n", 1)[1]:
        return inner.rsplit("\n", 1)[1]
    return "  "


def _pretty(el: etree._Element, indent: str, unit: str) -> None:
    """Indent the children of a new element ``el`` that sits at ``indent``."""
    if not len(el):
        return
    el.text = indent + unit
    for child in el:
        _pretty(child, indent + unit, unit)
        child.tail = indent + unit
    el[-1].tail = indent


# -- inserting and removing ---------------------------------------------------
def insert_at(parent: etree._Element, index: int, el: etree._Element) -> None:
    """Insert ``el`` as child number ``index`` of ``parent``, indented like its siblings."""
    kids = list(parent)
    if index < len(kids):
        el.tail = indent_of(kids[index])
    elif kids:
        last = kids[-1]
        el.tail, last.tail = last.tail, indent_of(last) or last.tail
    else:
        outer = indent_of(parent)
        if outer is not None and _blank(parent.text):
            parent.text, el.tail = outer + indent_unit(parent), outer
    parent.insert(index, el)
    inner = indent_of(el)
    if inner is not None:
        _pretty(el, inner, indent_unit(parent))


def position(parent: etree._Element, tag: str, order: tuple[str, ...]) -> int:
    """Where a new ``tag`` goes: after the last child that comes before it or
    is of its kind in ``order``; first when there is none."""
    rank = order.index(tag)
    index = 0
    for i, kid in enumerate(parent):
        if isinstance(kid.tag, str) and kid.tag in order and order.index(kid.tag) <= rank:
            index = i + 1
    return index


def insert_child(parent: etree._Element, el: etree._Element, order: tuple[str, ...]) -> None:
    insert_at(parent, position(parent, el.tag, order), el)


def new_element(parent: etree._Element, tag: str, attrib: dict[str, str] | None = None,
                text: str | None = None) -> etree._Element:
    """A new element for ``parent``'s document (not inserted yet)."""
    el = parent.makeelement(tag, attrib or {})
    el.text = text
    return el


def ensure_child(parent: etree._Element, tag: str, order: tuple[str, ...],
                 attrib: dict[str, str] | None = None) -> etree._Element:
    """The first ``tag`` child of ``parent``, created in its place when absent."""
    el = parent.find(tag)
    if el is None:
        el = new_element(parent, tag, attrib)
        insert_child(parent, el, order)
    return el


def detach(el: etree._Element) -> None:
    """Remove ``el``; the space before it takes the space that followed it."""
    parent = el.getparent()
    prev = el.getprevious()
    if prev is not None:
        if _blank(prev.tail):
            prev.tail = el.tail
    elif _blank(parent.text):
        parent.text = el.tail
    parent.remove(el)


def is_empty(el: etree._Element) -> bool:
    """No child nodes (comments count), no text, no attributes."""
    return not len(el) and _blank(el.text) and not el.attrib


def remove(el: etree._Element, prune: frozenset[str] = frozenset()) -> None:
    """Remove ``el``, then each ancestor whose tag is in ``prune`` and that
    is left empty."""
    parent = el.getparent()
    detach(el)
    while parent is not None and parent.tag in prune and is_empty(parent):
        grand = parent.getparent()
        detach(parent)
        parent = grand


# -- values -------------------------------------------------------------------
def set_attr(el: etree._Element, name: str, value: str) -> None:
    """Set an attribute unless it already has that value (keeps its position)."""
    if el.get(name) != value:
        el.set(name, value)


def drop_attr(el: etree._Element, name: str) -> None:
    if name in el.attrib:
        del el.attrib[name]


def set_text(el: etree._Element, text: str) -> None:
    if (el.text or "") != text:
        el.text = text
