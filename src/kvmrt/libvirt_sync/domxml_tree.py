"""Editing a libvirt domain XML in place, so that diffs stay minimal.

The XML comes from libvirt (``virDomainGetXMLDesc``), and a
:class:`Document` writes it back the way libvirt wrote it, so that an
unchanged domain reads back unchanged and a diff shows only what kvmrt
changed: lxml keeps whitespace, comments and attribute order, but writes
``"`` around attributes and namespace declarations first, where libvirt
writes ``'``, its declarations last and ``&apos;``/``&quot;`` in text.
Inside ``<metadata>`` libvirt writes what libxml2 writes, as lxml does.
(libvirt's XML has no XML declaration, prolog or comment around the root:
none is kept.)

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
# lxml's output, piece by piece: markup that is left alone, a start tag
# (groups "tag" and "attrs"), or text (group "text").
_MARKUP = re.compile(
    r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<![^>]*>|</[^>]*>"
    r"|<(?P<tag>[^\s/>]+)(?P<attrs>(?:\s+[^\s=/>]+=\"[^\"]*\")*)\s*/?>|(?P<text>[^<]+)",
    re.S,
)
_ATTRIBUTE = re.compile(r"\s+([^\s=/>]+)=\"([^\"]*)\"")
_LIBVIRT_ESCAPES = str.maketrans({"'": "&apos;", '"': "&quot;"})


@dataclass
class Document:
    """A parsed domain XML, written back in libvirt's style; ``end`` is the
    line break libvirt puts after ``</domain>``."""

    root: etree._Element
    end: str = ""

    def serialize(self) -> str:
        body = etree.tostring(self.root, encoding="unicode", with_tail=False)
        out: list[str] = []
        path: list[str] = []        # the open elements
        for markup in _MARKUP.finditer(body):
            piece = markup.group(0)
            out.append(piece if path[1:2] == ["metadata"] else _libvirt_style(markup))
            if markup.group("tag") is not None and not piece.endswith("/>"):
                path.append(markup.group("tag"))
            elif piece.startswith("</"):
                path.pop()
        return "".join(out) + self.end


def parse_domain(xml: str) -> Document:
    """Parse a domain XML; :class:`DomainXmlError` when it is not one."""
    if not isinstance(xml, str):
        raise DomainXmlError(f"expected the XML as text, got {type(xml).__name__}")
    try:
        root = etree.fromstring(xml.encode(), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise DomainXmlError(f"not well-formed XML: {exc.msg}", exc.lineno or None) from exc
    if root.tag != "domain":
        raise DomainXmlError(f"the root element is <{_name(root)}>, not <domain>", root.sourceline)
    return Document(root, xml[len(xml.rstrip()):])


def _libvirt_style(markup: re.Match) -> str:
    """One piece of lxml's output as libvirt writes it."""
    if markup.group("text") is not None:
        return markup.group("text").translate(_LIBVIRT_ESCAPES)
    if not markup.group("attrs"):
        return markup.group(0)
    found = _ATTRIBUTE.findall(markup.group("attrs"))
    found.sort(key=lambda a: a[0] == "xmlns" or a[0].startswith("xmlns:"))
    written = "".join(f" {name}='{value.replace(chr(39), '&apos;')}'" for name, value in found)
    start, end = markup.span("attrs")
    whole, at = markup.group(0), markup.start()
    return whole[:start - at] + written + whole[end - at:]


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
