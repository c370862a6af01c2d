"""Interrupts: ``/proc/irq/N/``, ``/proc/interrupts``, the default IRQ
affinity and the workqueue CPU mask.

What the kernel does that matters here:

- ``smp_affinity_list`` takes a cpulist; a write that leaves no online CPU
  fails with EINVAL. Managed interrupts (per-queue vectors of NVMe,
  virtio-blk...) and IRQ 0/2 refuse every write: EIO, EPERM on newer
  kernels (6.x here). Refusals are :class:`IrqRefused`, an expected outcome.
- The CPU that really receives the interrupt is ``effective_affinity_list``
  (absent on some architectures and old kernels), one CPU of the affinity
  on x86.
- ``/proc/interrupts`` ends each line with the actions (handler names) of
  the IRQ, comma-separated, after at least two spaces; before them come the
  per-CPU counts, the chip (``IR-PCI-MSIX-0000:21:00.0``, ``IO-APIC``), the
  hardware IRQ and the flow (``5-edge``, ``27 Level``). A line whose IRQ
  has no action ends with the flow.
- vfio-pci names its handlers ``vfio-msix[N](BDF)``, ``vfio-msi[N](BDF)``
  and ``vfio-intx(BDF)``; they exist while the guest has them enabled.
"""

from __future__ import annotations

import errno
import itertools
import re
from dataclasses import dataclass

from kvmrt.sets import PciAddress, format_ids
from kvmrt.errors import HostReadError, HostWriteError, IrqRefused
from kvmrt.host.fs import HostFS, host_read_errors
from kvmrt.host.masks import format_mask, mask_bits, read_mask

IRQ_DIR = "proc/irq"
INTERRUPTS = "proc/interrupts"
DEFAULT_AFFINITY = "proc/irq/default_smp_affinity"
WORKQUEUE_MASK = "sys/devices/virtual/workqueue/cpumask"

_REFUSALS = frozenset({errno.EIO, errno.EPERM})
# The hwirq-flow column: "5-edge", "-edge" (no hwirq), "27 Level", "Edge".
_FLOW = re.compile(r"(?:^|\s)\d*-\S+$|(?:^|\s)\d+\s+(?:Edge|Level)\S*$|^(?:Edge|Level)\S*$")
_VFIO = re.compile(r"vfio-(?:msix|msi)\[\d+\]\(([^)]+)\)|vfio-intx\(([^)]+)\)")


@dataclass(frozen=True)
class Irq:
    """One interrupt: its affinity, the CPUs it is delivered to, its actions."""

    number: int
    affinity: frozenset[int]
    effective: frozenset[int] | None
    name: str


def parse_interrupts(text: str) -> dict[int, str]:
    """IRQ number -> actions column of ``/proc/interrupts`` ("" without action).

    The per-CPU counts before the chip (11 MB of them at 512 CPUs and 2,000
    IRQs) are never split: the actions are found from the end of the line.
    Fewer counts than the header has CPUs (a CPU that went offline) change
    nothing.
    """
    names = {}
    for line in text.splitlines():
        head, colon, rest = line.partition(":")
        head = head.lstrip()
        if colon and head.isdecimal():
            names[int(head)] = _actions(rest)
    return names


_COUNTS = " 0123456789"


def interrupt_counts(text: str) -> tuple[list[int], dict[str, list[int]]]:
    """``/proc/interrupts`` as counts: the CPUs of its columns (the online
    ones) and each line's count per CPU, by the line's name (``25``,
    ``NMI``, ``LOC``...); a line with fewer counts (``ERR``) has those."""
    lines = text.splitlines()
    cpus = _header_cpus(lines)
    counts = {}
    for line in lines[1:]:
        head, colon, rest = line.partition(":")
        if not colon:
            continue
        fields = rest.split(None, len(cpus))[:len(cpus)]
        numbers = list(itertools.takewhile(str.isdecimal, fields))
        if numbers:
            counts[head.strip()] = [int(n) for n in numbers]
    return cpus, counts


def _header_cpus(lines: list[str]) -> list[int]:
    """The CPU ids of the header line (``CPU0 CPU1 ...``), [] without one."""
    if not lines or _irq_number(lines[0]) is not None:
        return []
    return [int(w[3:]) for w in lines[0].split() if w.startswith("CPU") and w[3:].isdecimal()]


def _irq_number(line: str) -> int | None:
    """The IRQ number of a line ``"  25: ..."``; None for ``NMI:``, the header..."""
    head, colon, _ = line.partition(":")
    head = head.lstrip()
    return int(head) if colon and head.isdecimal() else None


def _actions(rest: str) -> str:
    """The column after chip and hwirq-flow: what follows the last run of
    two or more blanks, unless that is the flow itself (no action). Found
    from the right; only where nothing but counts or a number stands before
    it are the counts skipped from the left."""
    rest = rest.rstrip()
    cut = rest.rfind("  ")
    if cut < 0:
        return ""
    end = cut
    while end and rest[end - 1] == " ":
        end -= 1
    before = rest[rest.rfind(" ", 0, end) + 1:end]
    if not before or before.isdecimal():
        rest = rest.lstrip(_COUNTS)
        cut = rest.rfind("  ")
        if cut < 0:
            return ""
    actions = rest[cut + 2:].lstrip()
    return "" if _FLOW.search(actions) else actions


def read_interrupts(fs: HostFS) -> dict[int, str]:
    """The actions of each IRQ in ``proc/interrupts`` (absent: none)."""
    with host_read_errors():
        return parse_interrupts(fs.read(INTERRUPTS, default=""))


def read_irqs(fs: HostFS, names: dict[int, str] | None = None) -> list[Irq]:
    """Every ``proc/irq/N`` that has ``smp_affinity_list``, by IRQ number;
    ``names``: :func:`read_interrupts`, when the caller has read it.

    IRQs freed while they are read are left out.
    """
    if names is None:
        names = read_interrupts(fs)
    with host_read_errors():
        numbers = sorted(int(n) for n in fs.listdir(IRQ_DIR, default=[]) if n.isdigit())
        irqs = (_read_irq(fs, n, names.get(n, "")) for n in numbers)
        return [irq for irq in irqs if irq is not None]


def _read_irq(fs: HostFS, number: int, name: str) -> Irq | None:
    base = f"{IRQ_DIR}/{number}"
    affinity = fs.read_cpulist(f"{base}/smp_affinity_list", default=None)
    if affinity is None:
        return None
    effective = fs.read_cpulist(f"{base}/effective_affinity_list", default=None)
    return Irq(number=number, affinity=affinity, effective=effective, name=name)


def set_irq_affinity(fs: HostFS, irq: int, cpus: frozenset[int]) -> frozenset[int] | None:
    """Write ``smp_affinity_list`` of ``irq``, check it, return the effective CPUs.

    Raises :class:`IrqRefused` when the kernel refuses (EIO, EPERM), and
    :class:`HostWriteError` naming the file for any other failure (EINVAL:
    no online CPU in ``cpus``; ENOENT: the IRQ was freed) or when the kernel
    kept another affinity. The result is ``effective_affinity_list``, or
    ``None`` where the kernel has no such file.
    """
    _require_cpus(cpus, f"IRQ {irq}")
    rel = f"{IRQ_DIR}/{irq}/smp_affinity_list"
    try:
        fs.write(rel, format_ids(cpus))
    except OSError as err:
        if err.errno in _REFUSALS:
            raise IrqRefused(irq, err.strerror or str(err)) from err
        raise HostWriteError(str(fs.path(rel)), err.strerror or str(err)) from err
    with host_read_errors():
        kept = fs.read_cpulist(rel)
        effective = fs.read_cpulist(f"{IRQ_DIR}/{irq}/effective_affinity_list", default=None)
    if kept != cpus:
        raise HostWriteError(str(fs.path(rel)),
                             f"wrote {format_ids(cpus)}, the kernel kept {format_ids(kept)}")
    return effective


def read_default_affinity(fs: HostFS) -> frozenset[int]:
    """``proc/irq/default_smp_affinity``: where newly requested IRQs start."""
    with host_read_errors():
        cpus = read_mask(fs, DEFAULT_AFFINITY)
    if cpus is None:
        raise HostReadError(str(fs.path(DEFAULT_AFFINITY)), "absent: no procfs below this root?")
    return cpus


def write_default_affinity(fs: HostFS, cpus: frozenset[int]) -> None:
    """Set ``proc/irq/default_smp_affinity`` and check that the kernel kept it."""
    _write_mask(fs, DEFAULT_AFFINITY, cpus, exact=True)


def read_workqueue_mask(fs: HostFS) -> frozenset[int] | None:
    """CPUs that unbound workqueues may use; ``None`` before Linux 4.2."""
    with host_read_errors():
        return read_mask(fs, WORKQUEUE_MASK)


def write_workqueue_mask(fs: HostFS, cpus: frozenset[int]) -> None:
    """Set the unbound workqueue CPU mask.

    Newer kernels also leave out isolated (``isolcpus=domain``) CPUs, so
    the kernel may keep fewer CPUs than written, never others.
    """
    _write_mask(fs, WORKQUEUE_MASK, cpus, exact=False)


def _require_cpus(cpus: frozenset[int], what: str) -> None:
    """An empty set is a caller's mistake: the kernel refuses it (EINVAL)."""
    if not cpus:
        raise ValueError(f"{what}: empty CPU set")


def _write_mask(fs: HostFS, rel: str, cpus: frozenset[int], *, exact: bool) -> None:
    _require_cpus(cpus, rel)
    path = str(fs.path(rel))
    try:
        old = fs.read(rel)
        fs.write(rel, format_mask(cpus, mask_bits(old)))
    except OSError as err:
        raise HostWriteError(path, err.strerror or str(err)) from err
    with host_read_errors():
        kept = read_mask(fs, rel)
    if kept is None or (kept != cpus if exact else not kept <= cpus):
        shown = "nothing" if kept is None else format_ids(kept)
        raise HostWriteError(path, f"wrote {format_ids(cpus)}, the kernel kept {shown}")


def vfio_irqs(fs: HostFS, names: dict[int, str] | None = None) -> dict[PciAddress, list[int]]:
    """The IRQs vfio-pci has requested for each device, from ``/proc/interrupts``
    (``names``: :func:`read_interrupts`, when the caller has read it)."""
    if names is None:
        names = read_interrupts(fs)
    found: dict[PciAddress, list[int]] = {}
    for irq, actions in sorted(names.items()):
        for msi, intx in _VFIO.findall(actions):
            found.setdefault(PciAddress.parse(msi or intx), []).append(irq)
    return found
