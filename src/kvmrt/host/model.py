"""What kvmrt knows about a host, as plain values.

The readers in :mod:`kvmrt.host.topology` and :mod:`kvmrt.host.pci` build
these from sysfs; tests and the placement code use them directly.

Numbering (SPEC 1.1): CPUs, NUMA nodes and packages keep the kernel's ids.
Cores and dies get a host-wide *logical* number, 0 upwards, ordered by
package and then by their lowest CPU id, because the kernel's ``core_id``
and ``die_id`` repeat across packages and may have gaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Mapping

from kvmrt.sets import PciAddress


@dataclass(frozen=True)
class RawCpu:
    """One present CPU as sysfs describes it.

    Topology fields are ``None`` for an offline CPU whose ``topology/``
    directory the kernel hides. ``siblings`` are the CPU's hardware threads
    (``thread_siblings_list``, itself included), or just ``{cpu}`` when
    unknown.
    """

    cpu: int
    online: bool
    package_id: int | None = None
    die_id: int | None = None
    core_id: int | None = None
    node: int | None = None
    siblings: frozenset[int] = frozenset()
    hotpluggable: bool = True


@dataclass(frozen=True)
class Cpu:
    """A CPU with the logical core and die numbers CPUSET uses."""

    cpu: int
    online: bool
    package: int | None
    die: int | None
    core: int | None
    node: int | None
    siblings: frozenset[int]
    hotpluggable: bool = True

    @property
    def topology_hidden(self) -> bool:
        """Offline, and the kernel hides its topology: its core is unknown."""
        return self.core is None


_GROUPS = {"node": "nodes", "core": "cores", "die": "dies", "package": "packages"}


@dataclass(frozen=True)
class Topology:
    """Present CPUs and NUMA nodes of a host."""

    cpus: Mapping[int, Cpu]
    nodes: Mapping[int, frozenset[int]]

    @classmethod
    def build(cls, raw: Iterable[RawCpu], nodes: Mapping[int, Iterable[int]]) -> "Topology":
        """Assign logical core/die numbers and complete node and sibling data."""
        raw = sorted(raw, key=lambda r: r.cpu)
        node_sets = {n: frozenset(c) for n, c in nodes.items()}
        node_of = {c: n for n, cs in node_sets.items() for c in cs}
        die_key = lambda r: (r.package_id, r.die_id)  # noqa: E731
        core_key = lambda r: (r.package_id, r.die_id, r.core_id)  # noqa: E731
        known = [r for r in raw if r.package_id is not None and r.core_id is not None]
        dies = _logical_numbers(known, die_key)
        cores = _logical_numbers(known, core_key)
        # Siblings: the union of what each thread reports, and of CPUs that
        # share (package, die, core_id): an offline thread may be missing
        # from its online sibling's list.
        members: dict[tuple, set[int]] = {}
        for r in known:
            members.setdefault(core_key(r), set()).add(r.cpu)
        cpus: dict[int, Cpu] = {}
        for r in raw:
            if r.package_id is not None and r.core_id is not None:
                sib = frozenset(members[core_key(r)] | set(r.siblings) | {r.cpu})
                core, die = cores[core_key(r)], dies[die_key(r)]
            else:
                sib, core, die = frozenset(r.siblings) | {r.cpu}, None, None
            node = r.node if r.node is not None else node_of.get(r.cpu)
            cpus[r.cpu] = Cpu(r.cpu, r.online, r.package_id, die, core, node, sib,
                              r.hotpluggable)
        for c in cpus.values():
            if c.node is not None:
                node_sets[c.node] = node_sets.get(c.node, frozenset()) | {c.cpu}
        return cls(cpus=cpus, nodes=dict(sorted(node_sets.items())))

    # -- sets of CPUs -------------------------------------------------------
    @cached_property
    def all_cpus(self) -> frozenset[int]:
        return frozenset(self.cpus)

    @cached_property
    def online_cpus(self) -> frozenset[int]:
        return frozenset(c for c, info in self.cpus.items() if info.online)

    @cached_property
    def packages(self) -> dict[int, frozenset[int]]:
        return _group(self.cpus.values(), "package")

    @cached_property
    def dies(self) -> dict[int, frozenset[int]]:
        return _group(self.cpus.values(), "die")

    @cached_property
    def cores(self) -> dict[int, frozenset[int]]:
        return _group(self.cpus.values(), "core")

    def siblings(self, cpu: int) -> frozenset[int]:
        """Hardware threads of ``cpu``'s core, ``cpu`` included."""
        info = self.cpus.get(cpu)
        return info.siblings if info else frozenset({cpu})

    def group(self, kind: str) -> Mapping[int, frozenset[int]]:
        """CPUs by ``kind``: 'node', 'core', 'die' or 'package'."""
        return getattr(self, _GROUPS[kind])

    def nodes_of(self, cpus: Iterable[int]) -> frozenset[int]:
        """The NUMA nodes of ``cpus`` (CPUs unknown or without a node add
        none). A frozenset's nodes are kept: a config of thousands of VMs
        asks about the same few sets tens of thousands of times."""
        if not isinstance(cpus, frozenset):
            return self._nodes_of(cpus)
        found = self._node_sets.get(cpus)
        if found is None:
            found = self._node_sets[cpus] = self._nodes_of(cpus)
        return found

    def _nodes_of(self, cpus: Iterable[int]) -> frozenset[int]:
        node_of = self._node_of
        return frozenset(node_of[c] for c in cpus if c in node_of)

    @cached_property
    def _node_of(self) -> dict[int, int]:
        return {c: info.node for c, info in self.cpus.items() if info.node is not None}

    @cached_property
    def _node_sets(self) -> dict[frozenset[int], frozenset[int]]:
        return {}


@dataclass(frozen=True)
class PciDevice:
    """One PCI function from ``/sys/bus/pci/devices``."""

    address: PciAddress
    numa_node: int | None
    iommu_group: int | None
    driver: str | None
    pci_class: int | None

    @property
    def bridge(self) -> bool:
        """Base class 0x06 is 'bridge device'."""
        return self.pci_class is not None and (self.pci_class >> 16) == 0x06


@dataclass(frozen=True)
class Host:
    """Everything kvmrt reads about a host at one moment."""

    topology: Topology
    pci: Mapping[PciAddress, PciDevice] = field(default_factory=dict)

    @cached_property
    def iommu_groups(self) -> dict[int, frozenset[PciAddress]]:
        groups: dict[int, set[PciAddress]] = {}
        for dev in self.pci.values():
            if dev.iommu_group is not None:
                groups.setdefault(dev.iommu_group, set()).add(dev.address)
        return {g: frozenset(m) for g, m in sorted(groups.items())}

    def group_members(self, address: PciAddress) -> frozenset[PciAddress]:
        dev = self.pci.get(address)
        if dev is None or dev.iommu_group is None:
            return frozenset({address})
        return self.iommu_groups[dev.iommu_group]


def _logical_numbers(raw: list[RawCpu], key) -> dict[tuple, int]:
    """Number the distinct ``key`` values by (package, lowest CPU id)."""
    lowest: dict[tuple, int] = {}
    for r in raw:
        k = key(r)
        lowest[k] = min(lowest.get(k, r.cpu), r.cpu)
    order = sorted(lowest, key=lambda k: (k[0], lowest[k]))
    return {k: i for i, k in enumerate(order)}


def _group(cpus: Iterable[Cpu], attr: str) -> dict[int, frozenset[int]]:
    out: dict[int, set[int]] = {}
    for c in cpus:
        v = getattr(c, attr)
        if v is not None:
            out.setdefault(v, set()).add(c.cpu)
    return {k: frozenset(v) for k, v in sorted(out.items())}
