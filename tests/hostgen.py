"""Build realistic sysfs trees for tests from a compact host description.

``build_host(root, spec)`` writes below ``root`` what a Linux kernel shows
for the machine ``spec`` describes, so kvmrt reads it through
``HostFS(root)`` exactly as it reads ``/``. Reproduced: x86 CPU numbering
(first threads of all cores, then second threads: CPU k and k + cores are
siblings); ``core_id`` gaps and repeats; offline CPUs (``online`` reads 0, no
``topology/``, missing from the ``online`` list, ``nodeN/cpulist`` and their
siblings' masks, ``cpuN/nodeM`` link kept); cpu0 without ``online``;
memory-only nodes; kernels without NUMA, ``die_id`` or ``core_cpus_list``;
PCI device directories under ``sys/devices/pci<domain>:<bus>/`` (nested
behind their bridge) with the relative links of ``sys/bus/pci/devices``,
``sys/bus/pci/drivers`` and ``sys/kernel/iommu_groups``.

To model more (``/proc/irq``, tasks...), add a field to :class:`HostSpec`
and a writer ``(tree, spec) -> None`` to :data:`WRITERS`. Named hosts encode
the machine, as hwloc's test trees do (``xeon_2s20c2t``: 2 sockets x 20
cores x 2 threads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from kvmrt.config.sets import format_ids

CPU = "sys/devices/system/cpu"
NODE = "sys/devices/system/node"


@dataclass(frozen=True)
class PciSpec:
    """One PCI function. ``parent`` is the address of the bridge it sits behind."""

    address: str
    pci_class: int
    numa_node: int = -1
    iommu_group: int | None = None
    driver: str | None = None
    parent: str | None = None
    vendor: int = 0x8086
    device: int = 0x1234


@dataclass(frozen=True)
class HostSpec:
    """A host: packages x dies x cores x threads, NUMA layout, PCI devices.

    ``numa_nodes`` nodes share the cores evenly in core order, then
    ``memory_only_nodes`` nodes follow without CPUs. ``core_ids``: kernel
    ``core_id`` of each core of a die (default 0..), repeated in every die.
    ``extra_possible``: hotplug slots (possible, not present). ``numa``,
    ``die_id_file``, ``core_cpus_files``, ``present_file``: False models an
    older or non-NUMA kernel.
    """

    name: str
    packages: int = 1
    dies_per_package: int = 1
    cores_per_die: int = 1
    threads_per_core: int = 1
    core_ids: tuple[int, ...] | None = None
    numa_nodes: int = 1
    memory_only_nodes: int = 0
    offline: frozenset[int] = frozenset()
    cpu0_hotplug: bool = False
    extra_possible: int = 0
    numa: bool = True
    die_id_file: bool = True
    core_cpus_files: bool = True
    present_file: bool = True
    pci: tuple[PciSpec, ...] = ()

    def __post_init__(self) -> None:
        if self.cores % self.numa_nodes:
            raise ValueError(f"{self.name}: {self.cores} cores do not fill {self.numa_nodes} nodes")
        if self.core_ids is not None and len(self.core_ids) != self.cores_per_die:
            raise ValueError(f"{self.name}: core_ids needs {self.cores_per_die} entries")
        if not self.offline <= set(range(self.cpu_count)):
            raise ValueError(f"{self.name}: offline CPUs {sorted(self.offline)} do not exist")
        addresses = {d.address for d in self.pci}
        for dev in self.pci:
            if dev.parent is not None and dev.parent not in addresses:
                raise ValueError(f"{self.name}: {dev.address}: no parent bridge {dev.parent}")

    @property
    def cores(self) -> int:
        return self.packages * self.dies_per_package * self.cores_per_die

    @property
    def cpu_count(self) -> int:
        return self.cores * self.threads_per_core

    @property
    def node_count(self) -> int:
        return self.numa_nodes + self.memory_only_nodes


@dataclass(frozen=True)
class CpuPlace:
    """Where one CPU sits. ``core`` and ``die`` are the host-wide logical
    numbers of SPEC 1.1 (as long as every core's first thread is online);
    ``die_id`` and ``core_id`` are what the kernel prints."""

    cpu: int
    package: int
    die: int
    die_id: int
    core: int
    core_id: int
    thread: int
    node: int
    online: bool


def layout(spec: HostSpec) -> list[CpuPlace]:
    """Every present CPU of ``spec`` in CPU order."""
    per_node = spec.cores // spec.numa_nodes
    ids = spec.core_ids or tuple(range(spec.cores_per_die))
    places = []
    for thread in range(spec.threads_per_core):
        for core in range(spec.cores):
            die, index = divmod(core, spec.cores_per_die)
            cpu = thread * spec.cores + core
            places.append(CpuPlace(
                cpu=cpu, package=die // spec.dies_per_package, die=die,
                die_id=die % spec.dies_per_package, core=core, core_id=ids[index],
                thread=thread, node=core // per_node, online=cpu not in spec.offline,
            ))
    return places


def cpumask(cpus: Iterable[int], nbits: int) -> str:
    """A kernel ``%*pb`` mask: hex, comma every 32 bits (``ffff,ffffffff``)."""
    value = sum(1 << c for c in set(cpus))
    digits = f"{value:0{max(1, (nbits + 3) // 4)}x}"
    chunks = []
    while digits:
        chunks.insert(0, digits[-8:])
        digits = digits[:-8]
    return ",".join(chunks)


class Tree:
    """Writes files and relative symlinks below a root, as sysfs shows them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._dirs: set[Path] = set()

    def mkdir(self, rel: str) -> Path:
        path = self.root / rel
        if path not in self._dirs:
            path.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path)
        return path

    def write(self, rel: str, text: str) -> None:
        """Write ``text`` plus the newline the kernel ends every file with."""
        parent, _, name = rel.rpartition("/")
        (self.mkdir(parent) / name).write_text(f"{text}\n")

    def symlink(self, rel: str, target: str) -> None:
        """A link at ``rel`` to ``target`` (both root-relative), stored relative."""
        parent, _, name = rel.rpartition("/")
        link_dir = self.mkdir(parent)
        os.symlink(os.path.relpath(self.root / target, link_dir), link_dir / name)


# -- CPUs -----------------------------------------------------------------
def write_cpus(tree: Tree, spec: HostSpec) -> None:
    """``sys/devices/system/cpu``: global lists, ``cpuN/online``, topology."""
    places = layout(spec)
    online = [p.cpu for p in places if p.online]
    possible = range(spec.cpu_count + spec.extra_possible)
    if spec.present_file:
        tree.write(f"{CPU}/present", format_ids(p.cpu for p in places))
    tree.write(f"{CPU}/possible", format_ids(possible))
    tree.write(f"{CPU}/online", format_ids(online))
    tree.write(f"{CPU}/offline", format_ids(set(possible) - set(online)))
    tree.write(f"{CPU}/kernel_max", "8191")
    tree.write(f"{CPU}/isolated", "")
    smt = spec.threads_per_core > 1
    tree.write(f"{CPU}/smt/control", "on" if smt else "notsupported")
    tree.write(f"{CPU}/smt/active", "1" if smt and _smt_active(places) else "0")
    online_by = {attr: _online_by(places, attr) for attr in ("core", "die", "package")}
    for place in places:
        write_cpu(tree, spec, place, online_by, nbits=len(possible))


def _smt_active(places: list[CpuPlace]) -> bool:
    return any(p.online and p.thread > 0 for p in places)


def _online_by(places: list[CpuPlace], attr: str) -> dict[int, list[int]]:
    """Online CPUs by core, die or package: what the kernel's sibling masks hold."""
    groups: dict[int, list[int]] = {}
    for p in places:
        if p.online:
            groups.setdefault(getattr(p, attr), []).append(p.cpu)
    return groups


OnlineBy = dict[str, dict[int, list[int]]]


def write_cpu(tree: Tree, spec: HostSpec, place: CpuPlace, online_by: OnlineBy,
              *, nbits: int) -> None:
    """``cpuN/``: ``online`` (not on cpu0), the node link, ``topology/`` if online."""
    base = f"{CPU}/cpu{place.cpu}"
    tree.mkdir(base)
    if place.cpu != 0 or spec.cpu0_hotplug:
        tree.write(f"{base}/online", "1" if place.online else "0")
    if spec.numa:
        tree.symlink(f"{base}/node{place.node}", f"{NODE}/node{place.node}")
    if place.online:
        write_cpu_topology(tree, spec, place, online_by, nbits=nbits)


def write_cpu_topology(tree: Tree, spec: HostSpec, place: CpuPlace, online_by: OnlineBy,
                       *, nbits: int) -> None:
    """``cpuN/topology/``; sibling masks hold online CPUs only, as in the kernel."""
    topo = f"{CPU}/cpu{place.cpu}/topology"
    tree.write(f"{topo}/physical_package_id", str(place.package))
    tree.write(f"{topo}/core_id", str(place.core_id))
    threads = online_by["core"][place.core]
    package = online_by["package"][place.package]
    masks = {"thread_siblings": threads, "core_siblings": package}
    if spec.die_id_file:
        tree.write(f"{topo}/die_id", str(place.die_id))
    if spec.core_cpus_files:
        masks |= {"core_cpus": threads, "package_cpus": package}
        if spec.die_id_file:
            masks["die_cpus"] = online_by["die"][place.die]
    for name, cpus in masks.items():
        tree.write(f"{topo}/{name}", cpumask(cpus, nbits))
        tree.write(f"{topo}/{name}_list", format_ids(cpus))


# -- NUMA nodes -------------------------------------------------------------
def write_nodes(tree: Tree, spec: HostSpec) -> None:
    """``sys/devices/system/node``: ``nodeN/cpulist`` holds online CPUs only."""
    if not spec.numa:
        return
    places = layout(spec)
    nodes = range(spec.node_count)
    online_by_node = _online_by(places, "node")
    for name in ("possible", "online", "has_memory", "has_normal_memory"):
        tree.write(f"{NODE}/{name}", format_ids(nodes))
    tree.write(f"{NODE}/has_cpu", format_ids(online_by_node))
    nbits = spec.cpu_count + spec.extra_possible
    for node in nodes:
        cpus = online_by_node.get(node, [])
        tree.write(f"{NODE}/node{node}/cpulist", format_ids(cpus))
        tree.write(f"{NODE}/node{node}/cpumap", cpumask(cpus, nbits))
        tree.write(f"{NODE}/node{node}/distance",
                   " ".join("10" if n == node else "20" for n in nodes))
    for p in places:
        tree.symlink(f"{NODE}/node{p.node}/cpu{p.cpu}", f"{CPU}/cpu{p.cpu}")


# -- PCI --------------------------------------------------------------------
def pci_device_dir(spec: HostSpec, address: str) -> str:
    """``sys/devices/pci0000:00/.../<address>``, nested behind parent bridges."""
    dev = next(d for d in spec.pci if d.address == address)
    if dev.parent is not None:
        return f"{pci_device_dir(spec, dev.parent)}/{address}"
    domain, bus, _ = address.split(":")
    return f"sys/devices/pci{domain}:{bus}/{address}"


def write_pci(tree: Tree, spec: HostSpec) -> None:
    """PCI device directories and every link sysfs keeps to them."""
    for dev in spec.pci:
        write_pci_device(tree, spec, dev)


def write_pci_device(tree: Tree, spec: HostSpec, dev: PciSpec) -> None:
    """The device directory, its ``driver``/``iommu_group`` links and their back-links."""
    base = pci_device_dir(spec, dev.address)
    online = [p for p in layout(spec) if p.online]
    local = [p.cpu for p in online if p.node == dev.numa_node] or [p.cpu for p in online]
    tree.write(f"{base}/class", f"0x{dev.pci_class:06x}")
    tree.write(f"{base}/vendor", f"0x{dev.vendor:04x}")
    tree.write(f"{base}/device", f"0x{dev.device:04x}")
    tree.write(f"{base}/numa_node", str(dev.numa_node))
    tree.write(f"{base}/local_cpulist", format_ids(local))
    tree.write(f"{base}/enable", "1")
    tree.symlink(f"{base}/subsystem", "sys/bus/pci")
    tree.symlink(f"sys/bus/pci/devices/{dev.address}", base)
    if dev.driver is not None:
        driver = f"sys/bus/pci/drivers/{dev.driver}"
        tree.symlink(f"{base}/driver", driver)
        tree.symlink(f"{driver}/{dev.address}", base)
    if dev.iommu_group is not None:
        group = f"sys/kernel/iommu_groups/{dev.iommu_group}"
        tree.write(f"{group}/type", "DMA")
        tree.symlink(f"{base}/iommu_group", group)
        tree.symlink(f"{group}/devices/{dev.address}", base)


WRITERS: list[Callable[[Tree, HostSpec], None]] = [write_cpus, write_nodes, write_pci]


def build_host(root: Path, spec: HostSpec) -> Path:
    """Write the sysfs tree of ``spec`` below ``root``; return ``root``."""
    tree = Tree(root)
    for writer in WRITERS:
        writer(tree, spec)
    return Path(root)


# -- named hosts ------------------------------------------------------------
AMD = 0x1022


def threadripper_5975wx() -> HostSpec:
    """AMD Threadripper PRO 5975WX, NPS4: 32 cores x 2 threads, 4 nodes of
    8 cores; GPU 21:00.0 alone in IOMMU group 10 on node 2, GPU+audio
    22:00.0/22:00.1 sharing group 11 on node 1."""
    pci = (
        PciSpec("0000:00:00.0", 0x060000, 0, iommu_group=0, vendor=AMD),
        PciSpec("0000:00:01.1", 0x060400, 0, iommu_group=1, driver="pcieport", vendor=AMD),
        PciSpec("0000:01:00.0", 0x020000, 0, iommu_group=2, driver="igb", parent="0000:00:01.1"),
        PciSpec("0000:00:14.0", 0x0c0500, -1, iommu_group=3, driver="piix4_smbus", vendor=AMD),
        PciSpec("0000:20:00.0", 0x060000, 1, iommu_group=4, vendor=AMD),
        PciSpec("0000:20:01.1", 0x060400, 2, iommu_group=5, driver="pcieport", vendor=AMD),
        PciSpec("0000:20:03.1", 0x060400, 1, iommu_group=6, driver="pcieport", vendor=AMD),
        PciSpec("0000:21:00.0", 0x030000, 2, iommu_group=10, driver="vfio-pci",
                parent="0000:20:01.1", vendor=0x10DE),
        PciSpec("0000:22:00.0", 0x030000, 1, iommu_group=11, driver="vfio-pci",
                parent="0000:20:03.1", vendor=0x10DE),
        PciSpec("0000:22:00.1", 0x040300, 1, iommu_group=11, driver="vfio-pci",
                parent="0000:20:03.1", vendor=0x10DE),
        PciSpec("0000:40:00.0", 0x010802, 3, iommu_group=12, driver="nvme", vendor=0x144D),
    )
    return HostSpec("threadripper_5975wx", cores_per_die=32, threads_per_core=2,
                    numa_nodes=4, pci=pci)


def xeon_2s20c2t() -> HostSpec:
    """Two-socket Xeon, 20 cores x 2 threads each; ``core_id`` has gaps and
    repeats in both packages; one node per package."""
    core_ids = (0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 16, 17, 18, 19, 20, 24, 25, 26, 27, 28)
    pci = (
        PciSpec("0000:00:00.0", 0x060000, 0, iommu_group=0),
        PciSpec("0000:18:00.0", 0x020000, 0, iommu_group=20, driver="i40e"),
        PciSpec("0000:80:00.0", 0x060000, 1, iommu_group=40),
        PciSpec("0000:af:00.0", 0x020000, 1, iommu_group=60, driver="mlx5_core", vendor=0x15B3),
    )
    return HostSpec("xeon_2s20c2t", packages=2, cores_per_die=20, threads_per_core=2,
                    core_ids=core_ids, numa_nodes=2, pci=pci)


def small_4c1t() -> HostSpec:
    """4 CPUs without SMT on one node; PCI like a VM: no NUMA affinity, no IOMMU."""
    pci = (
        PciSpec("0000:00:00.0", 0x060000, -1),
        PciSpec("0000:00:03.0", 0x020000, -1, driver="virtio-pci", vendor=0x1AF4),
    )
    return HostSpec("small_4c1t", cores_per_die=4, pci=pci)


def offline_4c2t() -> HostSpec:
    """4 cores x 2 threads on nodes 0-1, memory-only node 2; CPUs 5 and 7
    (second threads of cores 1 and 3) are offline."""
    return HostSpec("offline_4c2t", cores_per_die=4, threads_per_core=2, numa_nodes=2,
                    memory_only_nodes=1, offline=frozenset({5, 7}))


def multidie_2s2d4c2t() -> HostSpec:
    """2 packages x 2 dies x 4 cores x 2 threads; ``die_id`` and ``core_id``
    restart in every die and package; one node per die."""
    return HostSpec("multidie_2s2d4c2t", packages=2, dies_per_package=2, cores_per_die=4,
                    threads_per_core=2, numa_nodes=4)


def legacy_1s2c2t() -> HostSpec:
    """An old kernel without NUMA, ``die_id`` or ``core_cpus_list``: 2 cores x 2 threads."""
    return HostSpec("legacy_1s2c2t", cores_per_die=2, threads_per_core=2, numa=False,
                    die_id_file=False, core_cpus_files=False)


def big(cpus: int = 512, nodes: int = 16, packages: int = 2) -> HostSpec:
    """A large host for benchmarks: ``cpus`` CPUs, 2 threads per core,
    ``packages`` packages, ``nodes`` nodes sharing the cores evenly."""
    if cpus % (2 * packages):
        raise ValueError(f"{cpus} CPUs do not split into {packages} packages of 2-thread cores")
    return HostSpec(f"big_{packages}s{cpus // 2 // packages}c2t", packages=packages,
                    cores_per_die=cpus // 2 // packages, threads_per_core=2, numa_nodes=nodes)


NAMED_HOSTS: dict[str, Callable[[], HostSpec]] = {
    f.__name__: f
    for f in (threadripper_5975wx, xeon_2s20c2t, small_4c1t, offline_4c2t,
              multidie_2s2d4c2t, legacy_1s2c2t)
}
