"""Parsers for the kernel's text formats that the host checks read.

Pure functions on strings: ``/proc/cmdline``, kernel CPU lists as boot
parameters take them, ``/proc/cpuinfo``, ``meminfo``, ``/proc/self/limits``
and ``/proc/mounts``. The checks read the text through :class:`HostFS`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Iterable

from kvmrt.sets import format_ids
from kvmrt.errors import SetSyntaxError


@dataclass(frozen=True)
class KernelCmdline:
    """The kernel's own parameters from ``/proc/cmdline``.

    Everything after ``--`` goes to init and is left out. The kernel treats
    ``-`` and ``_`` in parameter names alike, so lookups do too. A
    parameter given more than once keeps every value; :meth:`get` returns
    the last, which is the one most parameters end up with.
    """

    text: str
    params: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "KernelCmdline":
        try:
            words = shlex.split(text)
        except ValueError:  # an unbalanced quote: the kernel splits on blanks
            words = text.split()
        if "--" in words:
            words = words[:words.index("--")]
        params = []
        for word in words:
            key, eq, value = word.partition("=")
            params.append((key, value if eq else None))
        return cls(text.strip(), tuple(params))

    def values(self, name: str) -> list[str | None]:
        want = _norm(name)
        return [v for k, v in self.params if _norm(k) == want]

    def has(self, name: str) -> bool:
        return bool(self.values(name))

    def get(self, name: str) -> str | None:
        found = self.values(name)
        return found[-1] if found else None

    def word(self, name: str) -> str | None:
        """``name=value`` as written on the command line (the last one), or None."""
        found = self.values(name)
        if not found:
            return None
        return name if found[-1] is None else f"{name}={found[-1]}"


def _norm(name: str) -> str:
    return name.replace("-", "_")


_GROUPED = re.compile(r"(\d+|N)(?:-(\d+|N))?(?::(\d+)/(\d+))?\Z")


def parse_kernel_cpulist(text: str, nr_cpus: int) -> frozenset[int]:
    """A CPU list as boot parameters take it (``bitmap_parselist``):
    ``0-3,8``, ``all``, ``N`` for the last CPU, ``0-15:2/4`` (2 of every 4).

    Raises :class:`SetSyntaxError` naming the bad element.
    """
    cpus: set[int] = set()
    last = nr_cpus - 1
    for element in filter(None, (e.strip() for e in text.split(","))):
        if element == "all":
            cpus.update(range(nr_cpus))
            continue
        m = _GROUPED.match(element)
        if not m:
            raise SetSyntaxError(element, "not a CPU, CPU range or 'all'")
        lo = last if m[1] == "N" else int(m[1])
        hi = lo if m[2] is None else (last if m[2] == "N" else int(m[2]))
        used, group = (int(m[3]), int(m[4])) if m[3] else (1, 1)
        if hi < lo or not 0 < used <= group:
            raise SetSyntaxError(element, "empty range")
        cpus.update(c for c in range(lo, hi + 1) if (c - lo) % group < used)
    return frozenset(cpus)


# isolcpus=[flag,...,]cpu-list: the flags the kernel knows.
ISOLCPUS_FLAGS = frozenset({"nohz", "domain", "managed_irq"})


def split_isolcpus(value: str) -> tuple[tuple[str, ...], str]:
    """``managed_irq,domain,8-23`` -> (("managed_irq", "domain"), "8-23")."""
    parts = value.split(",")
    flags = []
    while parts and parts[0] in ISOLCPUS_FLAGS:
        flags.append(parts.pop(0))
    return tuple(flags), ",".join(parts)


@dataclass(frozen=True)
class CpuInfo:
    """The first processor of ``/proc/cpuinfo``: vendor, model and flags."""

    vendor: str | None = None
    model: str | None = None
    flags: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> "CpuInfo":
        fields: dict[str, str] = {}
        for line in text.split("\n\n", 1)[0].splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
        flags = fields.get("flags") or fields.get("Features") or ""
        return cls(fields.get("vendor_id"), fields.get("model name"), frozenset(flags.split()))

    @property
    def intel(self) -> bool:
        return self.vendor == "GenuineIntel"

    @property
    def amd(self) -> bool:
        return self.vendor in ("AuthenticAMD", "HygonGenuine")


_MEMINFO = re.compile(r"(?:Node \d+ )?(\w+(?:\(\w+\))?):\s+(\d+)(?: kB)?\s*\Z")


def parse_meminfo(text: str) -> dict[str, int]:
    """``MemTotal:  16 kB`` (or ``Node 0 MemTotal: ...``) lines; kB in bytes,
    counts (``HugePages_Total``) as they are."""
    out = {}
    for line in text.splitlines():
        m = _MEMINFO.match(line.strip())
        if m:
            out[m[1]] = int(m[2]) * (1024 if line.rstrip().endswith("kB") else 1)
    return out


def parse_memlock(text: str) -> int | None:
    """The soft ``Max locked memory`` of a ``/proc/PID/limits`` text in bytes,
    ``None`` for unlimited. Raises ``ValueError`` when the line is missing."""
    for line in text.splitlines():
        if line.startswith("Max locked memory"):
            soft = line[len("Max locked memory"):].split()[0]
            return None if soft == "unlimited" else int(soft)
    raise ValueError("no 'Max locked memory' line")


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    fstype: str
    options: frozenset[str]


def parse_mounts(text: str) -> list[Mount]:
    """``/proc/mounts`` lines (octal escapes such as ``\\040`` decoded)."""
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), parts[1])
            mounts.append(Mount(parts[0], target, parts[2], frozenset(parts[3].split(","))))
    return mounts


def format_bytes(size: int) -> str:
    """``17179869184`` -> ``16 GiB``; one decimal below 10 units."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    if unit == "B" or value >= 10 or value.is_integer():
        return f"{value:.0f} {unit}"
    return f"{value:.1f} {unit}"


def brace_cpus(cpus: Iterable[int]) -> str:
    """CPU ids as a bash brace expression for sysfs paths: ``{8..23}``,
    ``{{0..7},{24..39}}``, ``5``."""
    runs = format_ids(cpus).split(",")
    terms = [r.replace("-", "..") for r in runs]
    terms = [f"{{{t}}}" if ".." in t else t for t in terms]
    if len(terms) == 1:
        return terms[0]
    return "{" + ",".join(terms) + "}"
