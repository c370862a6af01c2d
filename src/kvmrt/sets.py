"""The set types of kvmrt (SPEC 1.1): ID-set, CPUSET and PCISET.

The config file, the host readers and the tuning all use them, so they
depend on nothing of kvmrt but its errors: :meth:`CpuSpec.resolve` takes
any :class:`CpuGroups` (a :class:`kvmrt.host.model.Topology` is one).

Each is a value type with a parser and a canonical formatter, so that
``str(X.parse(s))`` is stable and ``X.parse(str(x)) == x``. Strings exist
only at this edge; the rest of kvmrt works with ``frozenset[int]`` and
:class:`PciAddress`.

A CPUSET is parsed in two steps. :meth:`CpuSpec.parse` checks the syntax
and needs no host; :meth:`CpuSpec.resolve` turns the prefixed elements
(``nN`` node, ``cN`` core, ``dN`` die, ``pN`` package) and a leading ``~``
into CPUs of a given host topology.

Every set is bounded before it is expanded, by what its ids can mean on
any Linux host: CPU ids (and the core, die and package numbers of a
CPUSET) below ``MAX_CPUS`` (the kernel's largest ``NR_CPUS``, 8192, so
``nr_cpu_ids`` never exceeds it), NUMA node ids below ``MAX_NODES``
(``MAX_NUMNODES`` with the largest ``NODES_SHIFT``, 10). A wider set is a
SetSyntaxError that says so; the host's own CPUs and nodes are checked
later (:meth:`CpuSpec.resolve`, the validator). Parsing costs time in the
length of the text, never in the width of a range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Mapping, Protocol

from kvmrt.errors import SetSyntaxError, UnknownHostObject

_INT = re.compile(r"[0-9]+\Z")

MAX_CPUS = 8192  # largest CONFIG_NR_CPUS Linux allows (x86-64 MAXSMP, powerpc)
MAX_NODES = 1024  # MAX_NUMNODES with the largest CONFIG_NODES_SHIFT (10)
MAX_DIGITS = 10  # more digits than any id or count kvmrt takes (and int() refuses 4300+)


def parse_decimal(token: str, element: str) -> int:
    """A non-negative decimal number of at most MAX_DIGITS digits."""
    if not _INT.match(token):
        raise SetSyntaxError(element, "not a non-negative integer" if token else "empty element")
    if len(token.lstrip("0")) > MAX_DIGITS:
        raise SetSyntaxError(element, f"number too large ({len(token)} digits)")
    return int(token)


class _Bound:
    """The ids one kind of element may name: ``kind`` below ``limit``."""

    def __init__(self, kind: str, limit: int, why: str) -> None:
        self.kind, self.limit, self.why = kind, limit, why

    def check(self, element: str, hi: int) -> None:
        if hi >= self.limit:
            raise SetSyntaxError(element, f"{self.kind} {hi} cannot exist: Linux numbers "
                                 f"{self.kind}s 0-{self.limit - 1} at most ({self.why})")


CPU_BOUND = _Bound("CPU", MAX_CPUS, "NR_CPUS is at most 8192")
NODE_BOUND = _Bound("NUMA node", MAX_NODES, "MAX_NUMNODES is at most 1024")
_GROUP_BOUNDS = {
    "": CPU_BOUND,
    "n": NODE_BOUND,
    "c": _Bound("core", MAX_CPUS, "a host has at most 8192 CPUs"),
    "d": _Bound("die", MAX_CPUS, "a host has at most 8192 CPUs"),
    "p": _Bound("package", MAX_CPUS, "a host has at most 8192 CPUs"),
}


def _expand(ranges: list[tuple[int, int]]) -> set[int]:
    """The ids of bounded ranges, each id visited once however they overlap."""
    ids: set[int] = set()
    top = -1
    for lo, hi in sorted(ranges):
        ids.update(range(max(lo, top + 1), hi + 1))
        top = max(top, hi)
    return ids


def format_ids(ids: Iterable[int], prefix: str = "") -> str:
    """Compress sorted ids into ranges: ``0,2,4-7`` (``n0,n2-3`` with a prefix).

    A frozenset's text is kept: a host formats the same few CPU sets for
    thousands of threads and IRQs (the set is immutable, its hash cached)."""
    if isinstance(ids, frozenset):
        return _format_frozen(ids, prefix)
    return _format_sorted(sorted(set(ids)), prefix)


@lru_cache(maxsize=4096)
def _format_frozen(ids: frozenset[int], prefix: str) -> str:
    return _format_sorted(sorted(ids), prefix)


def _format_sorted(ids: list[int], prefix: str) -> str:
    out: list[str] = []
    start = prev = None
    for i in ids:
        if prev is not None and i == prev + 1:
            prev = i
            continue
        if start is not None:
            out.append(_run(start, prev, prefix))
        start = prev = i
    if start is not None:
        out.append(_run(start, prev, prefix))
    return ",".join(out)


def _run(first: int, last: int, prefix: str) -> str:
    if first == last:
        return f"{prefix}{first}"
    return f"{prefix}{first}-{last}"


def _parse_range(element: str, prefix_letters: str = "") -> tuple[str, int, int]:
    """Parse ``A``, ``A-B``, ``xA`` or ``xA-B``/``xA-xB``; return (prefix, lo, hi)."""
    prefix = ""
    body = element
    if body[:1] in prefix_letters and body[:1] != "":
        prefix, body = body[0], body[1:]
    if not body.strip():
        raise SetSyntaxError(element, f"prefix {prefix!r} without a number" if prefix
                             else "empty element")
    lo_s, dash, hi_s = (part.strip() for part in body.partition("-"))
    if dash and not (lo_s and hi_s):
        raise SetSyntaxError(element, "a range needs a start and an end (like 4-7)")
    if dash and prefix_letters and hi_s[:1] in prefix_letters:
        if hi_s[0] != prefix:
            raise SetSyntaxError(element, "a range must not mix prefixes")
        hi_s = hi_s[1:].strip()
    elif dash and prefix and hi_s[:1].isalpha():
        raise SetSyntaxError(element, "a range must not mix prefixes")
    lo = parse_decimal(lo_s.strip(), element)
    hi = parse_decimal(hi_s.strip(), element) if dash else lo
    if hi < lo:
        raise SetSyntaxError(element, f"range end {hi} is below its start {lo}")
    return prefix, lo, hi


class IdSet(frozenset):
    """A set of non-negative integers written ``0,2,4-7``; empty is allowed."""

    @classmethod
    def parse(cls, text: str, bound: _Bound = CPU_BOUND) -> "IdSet":
        """Parse ``text``; ids must lie below ``bound`` (CPU ids by default)."""
        ranges: list[tuple[int, int]] = []
        text = text.strip()
        if not text:
            return cls()
        for raw in text.split(","):
            element = raw.strip()
            if not element:
                raise SetSyntaxError(raw, "empty element (stray comma?)")
            _, lo, hi = _parse_range(element)
            bound.check(element, hi)
            ranges.append((lo, hi))
        return cls(_expand(ranges))

    @classmethod
    def parse_nodes(cls, text: str) -> "IdSet":
        """An ID-set of NUMA nodes (numatune)."""
        return cls.parse(text, NODE_BOUND)

    def __str__(self) -> str:
        return format_ids(self)

    def __repr__(self) -> str:
        return f"IdSet({str(self)!r})"


class CpuGroups(Protocol):
    """What resolving a CPUSET needs of a host: its CPUs and their groups."""

    @property
    def all_cpus(self) -> frozenset[int]: ...

    def group(self, kind: str) -> Mapping[int, frozenset[int]]:
        """CPUs by ``kind``: 'node', 'core', 'die' or 'package'."""
        ...


# Prefix letters and the topology group each names, in canonical order.
PREFIXES = {"p": "package", "d": "die", "n": "node", "c": "core"}


@dataclass(frozen=True)
class CpuSpec:
    """A parsed CPUSET: plain CPUs, prefixed groups, and a complement flag.

    ``groups`` maps a prefix letter ('' for plain CPUs) to the ids it names.
    """

    groups: tuple[tuple[str, frozenset[int]], ...] = ()
    complement: bool = False

    @classmethod
    @lru_cache(maxsize=4096)
    def parse(cls, text: str) -> "CpuSpec":
        # Cached: a big config repeats a few cpusets over thousands of VMs,
        # and a CpuSpec is immutable (an error is raised anew each time).
        text = text.strip()
        complement = text.startswith("~")
        if complement:
            text = text[1:].strip()
            if not text:
                raise SetSyntaxError("~", "complement of nothing")
        found: dict[str, list[tuple[int, int]]] = {}
        if text:
            for raw in text.split(","):
                element = raw.strip()
                if not element:
                    raise SetSyntaxError(raw, "empty element (stray comma?)")
                if element[0].isalpha() and element[0] not in PREFIXES:
                    raise SetSyntaxError(
                        element, "unknown prefix (use n=node, c=core, d=die, p=package)"
                    )
                prefix, lo, hi = _parse_range(element, "".join(PREFIXES))
                _GROUP_BOUNDS[prefix].check(element, hi)
                found.setdefault(prefix, []).append((lo, hi))
        order = ["", *PREFIXES]
        groups = tuple((p, frozenset(_expand(found[p]))) for p in order if p in found)
        return cls(groups, complement)

    @classmethod
    def of_cpus(cls, cpus: Iterable[int]) -> "CpuSpec":
        cpus = frozenset(cpus)
        return cls((("", cpus),) if cpus else ())

    @property
    def empty(self) -> bool:
        return not self.groups and not self.complement

    def __str__(self) -> str:
        body = ",".join(format_ids(ids, prefix) for prefix, ids in self.groups)
        return f"~{body}" if self.complement else body

    def resolve(self, topology: CpuGroups) -> frozenset[int]:
        """The host CPUs this spec names.

        Raises :class:`UnknownHostObject` for the first element that names
        something the host does not have.
        """
        cpus: set[int] = set()
        for prefix, ids in self.groups:
            if prefix == "":  # plain CPUs name themselves: no table of 512 sets per VM
                _check_known(ids, topology.all_cpus, "CPU")
                cpus |= ids
                continue
            kind = PREFIXES[prefix]
            table = topology.group(kind)
            _check_known(ids, table.keys(), "NUMA node" if kind == "node" else kind)
            for i in ids:
                cpus |= table[i]
        if self.complement:
            return topology.all_cpus - cpus
        return frozenset(cpus)


def _check_known(ids: frozenset[int], known, kind: str) -> None:
    """UnknownHostObject for the lowest of ``ids`` the host does not have."""
    missing = [i for i in ids if i not in known]  # no set of the host's ids per call
    if missing:
        raise UnknownHostObject(kind, min(missing), format_ids(known))


_PCI = re.compile(
    r"(?P<domain>[0-9a-fA-F]{4,5}):(?P<bus>[0-9a-fA-F]{2}):"
    r"(?P<device>[0-9a-fA-F]{2})\.(?P<function>[0-7])\Z"
)


@dataclass(frozen=True, order=True)
class PciAddress:
    """A full PCI address ``domain:bus:device.function``."""

    domain: int
    bus: int
    device: int
    function: int

    @classmethod
    def parse(cls, text: str) -> "PciAddress":
        m = _PCI.match(text.strip())
        if not m:
            raise SetSyntaxError(text, "not a PCI address of the form 0000:21:00.0")
        device = int(m["device"], 16)
        if device > 0x1F:
            raise SetSyntaxError(text, "PCI device number above 1f")
        return cls(int(m["domain"], 16), int(m["bus"], 16), device, int(m["function"]))

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.device:02x}.{self.function:x}"


class PciSet(tuple):
    """Space-separated PCI addresses, kept sorted and without duplicates."""

    @classmethod
    def parse(cls, text: str) -> "PciSet":
        return cls(sorted({PciAddress.parse(t) for t in text.split()}))

    def __new__(cls, addresses: Iterable[PciAddress] = ()) -> "PciSet":
        return super().__new__(cls, sorted(set(addresses)))

    def __str__(self) -> str:
        return " ".join(str(a) for a in self)
