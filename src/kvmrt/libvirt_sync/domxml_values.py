"""Values in libvirt's domain XML, parsed as libvirt parses them.

- a CPU or node set (``cpuset='0-3,^2,8'``, libvirt's ``virBitmapParse``);
- a PCI address (``<address domain='0x0000' bus='0x21' slot='0x00'
  function='0x0'/>``), numbers in any base C's ``strtoul(…, 0)`` reads;
- unsigned integers.

Each parser raises :class:`DomainXmlError` naming the element and the
offending text.
"""

from __future__ import annotations

import re

from lxml import etree

from kvmrt.sets import PciAddress
from kvmrt.errors import DomainXmlError

_C_NUMBER = re.compile(r"\s*(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\s*\Z")


def _c_number(text: str) -> int | None:
    """An unsigned number as ``strtoul(text, NULL, 0)`` reads it, else None."""
    m = _C_NUMBER.match(text)
    if not m:
        return None
    digits = m.group(1)
    if digits[:2].lower() == "0x":
        return int(digits, 16)
    return int(digits, 8) if digits.startswith("0") else int(digits)


def uint_of(el: etree._Element, text: str | None, what: str) -> int:
    """A decimal unsigned integer from ``el`` (its text or an attribute value)."""
    if text is None or not text.strip().isdigit():
        raise DomainXmlError(f"<{el.tag}>: {what} {text!r} is not an unsigned integer",
                             el.sourceline)
    return int(text.strip())


def cpuset_of(el: etree._Element, attr: str) -> frozenset[int]:
    """The set in attribute ``attr`` of ``el``, in libvirt's syntax."""
    text = el.get(attr)
    ids = parse_cpuset(text) if text is not None else None
    if ids is None:
        raise DomainXmlError(f"<{el.tag} {attr}={text!r}>: not a CPU or node set "
                             "such as '0-3,8' or '0-7,^4'", el.sourceline)
    return ids


def parse_cpuset(text: str) -> frozenset[int] | None:
    """``0-3,^2,8`` → {0, 1, 3, 8}; None when ``text`` is not such a set."""
    ids: set[int] = set()
    excluded: set[int] = set()
    for element in text.split(","):
        element = element.strip()
        m = re.fullmatch(r"(\^?)(\d+)(?:\s*-\s*(\d+))?", element)
        if not m or (m.group(1) and m.group(3)):
            return None
        lo = int(m.group(2))
        hi = int(m.group(3)) if m.group(3) else lo
        if hi < lo:
            return None
        (excluded if m.group(1) else ids).update(range(lo, hi + 1))
    return frozenset(ids - excluded)


def pci_address_of(address: etree._Element | None, owner: etree._Element) -> PciAddress:
    """The host PCI address of a ``<hostdev>``'s ``<source><address>``."""
    if address is None:
        raise DomainXmlError("PCI <hostdev> without <source><address>", owner.sourceline)
    fields = {}
    for attr, limit in (("domain", 0xFFFF), ("bus", 0xFF), ("slot", 0x1F), ("function", 7)):
        text = address.get(attr, "0" if attr == "domain" else None)
        value = _c_number(text) if text is not None else None
        if value is None or value > limit:
            problem = (f"{attr} is missing" if text is None
                       else f"{attr}={text!r} is not a number" if value is None
                       else f"{attr}={text!r} is above {limit:#x}")
            raise DomainXmlError(f"PCI <hostdev> source address: {problem}", address.sourceline)
        fields[attr] = value
    return PciAddress(fields["domain"], fields["bus"], fields["slot"], fields["function"])


def pci_address_attrib(a: PciAddress) -> dict[str, str]:
    """The attributes of ``<address>`` as libvirt writes them."""
    return {"domain": f"0x{a.domain:04x}", "bus": f"0x{a.bus:02x}",
            "slot": f"0x{a.device:02x}", "function": f"0x{a.function:x}"}
