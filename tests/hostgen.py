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

Runtime state, what real-time tuning reads and changes (formats copied
from Linux 6.x ``/proc``), written when ``HostSpec.proc`` is set (every
named host sets it):

- tasks: ``proc/PID/task/TID/{stat,status}`` (52-field ``stat`` with
  PF_KTHREAD / PF_NO_SETAFFINITY in ``flags``, ``status`` with
  ``Cpus_allowed`` and ``Cpus_allowed_list``) and ``proc/PID/comm``. :func:`standard_tasks` is the
  default set (pids: 2 kthreadd, 15 rcu_preempt, 45 kswapd0, 48 an unbound
  kworker, 100.. migration/N and ksoftirqd/N per online CPU, 1 systemd, 5012 sshd,
  5120.. libvirtd's five threads);
- IRQs: ``proc/irq/N/{smp_affinity,smp_affinity_list,effective_affinity,
  effective_affinity_list,...}``, ``proc/irq/default_smp_affinity`` and
  ``proc/interrupts`` in the kernel's column layout (:func:`standard_irqs`;
  a fixture's ``effective_affinity_list`` does not follow writes);
- ``sys/devices/virtual/workqueue/cpumask``;
- ``HostSpec.cpusets``: a cgroup v1 cpuset tree (:func:`libvirt_cpusets`);
- ``HostSpec.domains``: running libvirt domains, ``run/libvirt/qemu/NAME.
  {pid,xml}``, QEMU's threads in ``proc`` (even without ``proc``) and the
  vfio IRQs of their devices (:func:`vfio_irq_specs`, from IRQ 200).

What a plain file tree cannot do, tests do at the moment it matters: delete
``proc/PID/task/TID`` to make a thread vanish, :func:`refuse_irq_writes` to
make an IRQ refuse like a managed one (EIO via a link to ``/proc/self/mem``),
:func:`drop_from_cpusets` for what cgroup v1 does to cpusets when a CPU goes
offline. cpu0 has no ``online`` file unless ``cpu0_hotplug``.

To model more, add a field to :class:`HostSpec` and a writer ``(tree, spec)
-> None`` to :data:`WRITERS`. Named hosts encode the machine, as hwloc's
test trees do (``xeon_2s20c2t``: 2 sockets x 20 cores x 2 threads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from kvmrt.sets import IdSet, format_ids

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
class TaskSpec:
    """One thread in ``proc/PID/task/TID``. ``tid`` None: the main thread.
    ``affinity`` None: every possible CPU; ``last_cpu`` None: the lowest CPU of
    the affinity; ``starttime`` None: derived from the tid. ``kernel`` sets
    PF_KTHREAD, ``pinned`` PF_NO_SETAFFINITY (per-CPU kernel threads)."""

    pid: int
    comm: str
    tid: int | None = None
    affinity: frozenset[int] | None = None
    kernel: bool = False
    pinned: bool = False
    last_cpu: int | None = None
    starttime: int | None = None
    state: str = "S"
    worker: bool = False     # the kernel's thread in a user process (PF_USER_WORKER)

    @property
    def thread_id(self) -> int:
        return self.pid if self.tid is None else self.tid


@dataclass(frozen=True)
class IrqSpec:
    """One interrupt: ``proc/irq/N/`` and its line in ``proc/interrupts``.
    ``name`` is the actions column ("" for none); ``affinity`` None: every
    possible CPU; ``effective`` None: one online CPU of the affinity, chosen
    by IRQ number as x86 spreads them; ``effective_file`` False: a kernel
    without ``effective_affinity_list``."""

    number: int
    name: str = ""
    affinity: frozenset[int] | None = None
    effective: frozenset[int] | None = None
    chip: str = "IO-APIC"
    hwirq: int = 0
    flow: str = "edge"
    effective_file: bool = True


# Threads the kernel runs inside QEMU (PF_USER_WORKER, Linux 6.13+): KVM's
# NX huge page recovery, and one vhost worker per vhost device (vhost-PID).
KERNEL_WORKERS = ("kvm-nx-lpage-re",)


@dataclass(frozen=True)
class DomainSpec:
    """A running libvirt QEMU domain: ``run/libvirt/qemu/NAME.{pid,xml}`` and
    QEMU's threads (tids ``pid``, ``pid+1``, then iothreads, the monitor
    iothread, the vCPUs, the NX recovery worker). ``affinity`` None: every
    possible CPU (not pinned yet). Its ``pcidevs`` get vfio IRQs."""

    name: str
    pid: int
    vcpus: int = 2
    iothreads: int = 0
    pcidevs: tuple[str, ...] = ()
    affinity: frozenset[int] | None = None
    uuid: str = "fde74e84-0e1b-404e-90e7-72101e79c48a"
    comm: str = "qemu-system-x86"

    def threads(self) -> list[tuple[int, str]]:
        """``(tid, comm)`` of QEMU's threads, as libvirt 9 / QEMU 7 start them."""
        names = [self.comm, self.comm]
        names += [f"IO iothread{i}" for i in range(1, self.iothreads + 1)]
        names += ["IO mon_iothread"] + [f"CPU {n}/KVM" for n in range(self.vcpus)]
        names += list(KERNEL_WORKERS) + [f"vhost-{self.pid}"]
        return [(self.pid + i, name) for i, name in enumerate(names)]

    def vcpu_tids(self) -> dict[int, int]:
        return {int(c.split()[1].split("/")[0]): t for t, c in self.threads()
                if c.startswith("CPU ")}


@dataclass(frozen=True)
class HostSpec:
    """A host: packages x dies x cores x threads, NUMA layout, PCI devices.

    ``numa_nodes`` nodes share the cores evenly in core order, then
    ``memory_only_nodes`` nodes follow without CPUs. ``core_ids``: kernel
    ``core_id`` of each core of a die (default 0..), repeated in every die.
    ``extra_possible``: hotplug slots (possible, not present). ``numa``,
    ``die_id_file``, ``core_cpus_files``, ``present_file``: False models an
    older or non-NUMA kernel.

    Runtime state (see "Runtime state" in the module doc): ``proc`` writes
    ``/proc`` tasks and IRQs, ``proc/irq/default_smp_affinity`` and the
    workqueue ``cpumask`` (``workqueue_file`` False: a kernel before 4.2);
    ``tasks``/``irqs`` None then mean :func:`standard_tasks` /
    :func:`standard_irqs`. ``default_smp_affinity``/``workqueue_mask`` None:
    every possible CPU. ``cpusets``: a cgroup v1 cpuset tree, ``(group,
    cpus)`` parents first ("" is the root; :func:`libvirt_cpusets`).
    ``domains``: running libvirt domains, with their QEMU threads and the
    vfio IRQs of their ``pcidevs``.
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
    proc: bool = False
    tasks: tuple[TaskSpec, ...] | None = None
    irqs: tuple[IrqSpec, ...] | None = None
    default_smp_affinity: frozenset[int] | None = None
    workqueue_mask: frozenset[int] | None = None
    workqueue_file: bool = True
    cpusets: tuple[tuple[str, frozenset[int]], ...] | None = None
    domains: tuple[DomainSpec, ...] = ()

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
    def possible(self) -> range:
        return range(self.cpu_count + self.extra_possible)

    @property
    def online_cpus(self) -> list[int]:
        return [c for c in range(self.cpu_count) if c not in self.offline]

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
        """Make ``rel`` and its parents, one ``mkdir`` each (trees are built often)."""
        rel = rel.strip("/")
        path = self.root / rel
        if path not in self._dirs:
            if rel:
                self.mkdir(rel.rpartition("/")[0])
                path.mkdir(exist_ok=True)
            else:
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


# -- runtime state: tasks in /proc -------------------------------------------
PF_KTHREAD = 0x00200000
PF_NO_SETAFFINITY = 0x04000000
PF_WQ_WORKER = 0x00000020
PF_USER_WORKER = 0x00004000
KTHREAD_FLAGS = 0x00208040  # PF_KTHREAD|PF_NOFREEZE|PF_FORKNOEXEC, as kthreadd shows
PROCESS_FLAGS = 0x00400100  # PF_RANDOMIZE|PF_SUPERPRIV: a process after exec
THREAD_FLAGS = 0x00400040  # PF_RANDOMIZE|PF_FORKNOEXEC: a thread it started
SYSTEMD, SSHD, LIBVIRTD = 1, 5012, 5120
LIBVIRTD_THREADS = ("libvirtd", "rpc-libvirtd", "prio-rpc-libvir", "gmain", "gdbus")


def standard_tasks(spec: HostSpec) -> tuple[TaskSpec, ...]:
    """What a freshly booted host runs: movable kernel threads (kthreadd,
    rcu_preempt, kswapd0 on node 0's CPUs), per online CPU the pinned
    migration/N and ksoftirqd/N, an unbound kworker (pinned, yet on every
    CPU: it follows the workqueue cpumask), and systemd, sshd and libvirtd
    with five threads."""
    node0 = frozenset(p.cpu for p in layout(spec) if p.node == 0)
    tasks = [TaskSpec(2, "kthreadd", kernel=True), TaskSpec(15, "rcu_preempt", kernel=True),
             TaskSpec(45, "kswapd0", kernel=True, affinity=node0),
             TaskSpec(48, f"kworker/u{2 * len(spec.possible)}:0-events_unbound", kernel=True,
                      pinned=True)]
    pid = 100
    for cpu in spec.online_cpus:
        for name in ("migration/{}", "ksoftirqd/{}"):
            tasks.append(TaskSpec(pid, name.format(cpu), affinity=frozenset({cpu}),
                                  kernel=True, pinned=True))
            pid += 1
    if pid > SSHD:
        raise ValueError(f"{spec.name}: too many CPUs for the standard task pids")
    tasks += [TaskSpec(SYSTEMD, "systemd"), TaskSpec(SSHD, "sshd")]
    tasks += [TaskSpec(LIBVIRTD, comm, tid=LIBVIRTD + i) for i, comm in enumerate(LIBVIRTD_THREADS)]
    return tuple(tasks)


def domain_tasks(dom: DomainSpec) -> list[TaskSpec]:
    """QEMU's threads for a running domain."""
    return [TaskSpec(dom.pid, comm, tid=tid, affinity=dom.affinity,
                     worker=comm in KERNEL_WORKERS or comm.startswith("vhost-"))
            for tid, comm in dom.threads()]


def write_tasks(tree: Tree, spec: HostSpec) -> None:
    """``proc/PID/task/TID/{stat,status}`` and ``proc/PID/comm`` (no more:
    the fixture hosts are built for every test, and that is what is read)."""
    if not spec.proc and not spec.domains:
        return
    tasks = list(standard_tasks(spec) if spec.tasks is None else spec.tasks) if spec.proc else []
    for dom in spec.domains:
        tasks += domain_tasks(dom)
    threads: dict[int, int] = {}
    for task in tasks:
        threads[task.pid] = threads.get(task.pid, 0) + 1
    for task in tasks:
        write_task(tree, spec, task, threads[task.pid])


def write_task(tree: Tree, spec: HostSpec, task: TaskSpec, nthreads: int) -> None:
    tid = task.thread_id
    base = f"proc/{task.pid}/task/{tid}"
    affinity = task.affinity if task.affinity is not None else frozenset(spec.possible)
    tree.write(f"{base}/stat", task_stat(task, affinity, nthreads))
    tree.write(f"{base}/status", task_status(spec, task, affinity, nthreads))
    if tid == task.pid:
        tree.write(f"proc/{task.pid}/comm", task.comm)


def task_flags(task: TaskSpec) -> int:
    """``flags`` as the kernel shows them (ksoftirqd/1: 0x4208040)."""
    if task.worker:
        return THREAD_FLAGS | PF_USER_WORKER
    if not task.kernel:
        return PROCESS_FLAGS if task.thread_id == task.pid else THREAD_FLAGS
    worker = PF_WQ_WORKER if task.comm.startswith("kworker/") else 0
    return KTHREAD_FLAGS | worker | (PF_NO_SETAFFINITY if task.pinned else 0)


def task_stat(task: TaskSpec, affinity: frozenset[int], nthreads: int) -> str:
    """The 52 fields of ``stat`` (proc(5)), numbered from 1 as there."""
    tid = task.thread_id
    ppid = 2 if task.kernel and task.pid != 2 else (0 if task.pid <= 2 else SYSTEMD)
    starttime = task.starttime if task.starttime is not None else (
        22 if task.kernel or task.pid == SYSTEMD else 1000 + 3 * tid)
    last_cpu = task.last_cpu if task.last_cpu is not None else min(affinity, default=0)
    fields = ["0"] * 53
    fields[1:10] = [str(tid), f"({task.comm})", task.state, str(ppid), str(task.pid),
                    str(task.pid), "0", "-1", str(task_flags(task))]
    fields[18:21] = ["20", "0", str(nthreads)]
    fields[22] = str(starttime)
    fields[25] = "18446744073709551615"
    fields[38] = "17" if tid == task.pid else "-1"
    fields[39] = str(last_cpu)
    return " ".join(fields[1:])


def task_status(spec: HostSpec, task: TaskSpec, affinity: frozenset[int], nthreads: int) -> str:
    """``status`` as Linux 6.x prints it (fewer memory lines than a real one)."""
    tid = task.thread_id
    nbits = len(spec.possible)
    memory = "" if task.kernel else (
        "VmPeak:\t   19176 kB\nVmSize:\t   19176 kB\nVmLck:\t       0 kB\n"
        "VmRSS:\t   11092 kB\n")
    return (
        f"Name:\t{task.comm}\n" + ("" if task.kernel else "Umask:\t0022\n")
        + f"State:\t{task.state} ({'running' if task.state == 'R' else 'sleeping'})\n"
        f"Tgid:\t{task.pid}\nNgid:\t0\nPid:\t{tid}\nPPid:\t{0 if task.pid <= 2 else 1}\n"
        "TracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\nGroups:\t \n"
        f"NStgid:\t{task.pid}\nNSpid:\t{tid}\nNSpgid:\t{task.pid}\nNSsid:\t{task.pid}\n"
        f"Kthread:\t{int(task.kernel)}\n{memory}Threads:\t{nthreads}\n"
        "SigQ:\t0/96364\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n"
        f"Cpus_allowed:\t{cpumask(affinity, nbits)}\nCpus_allowed_list:\t{format_ids(affinity)}\n"
        f"Mems_allowed:\t{cpumask(range(max(1, spec.node_count)), 1024)}\n"
        f"Mems_allowed_list:\t{format_ids(range(max(1, spec.node_count)))}\n"
        "voluntary_ctxt_switches:\t10\nnonvoluntary_ctxt_switches:\t0")


# -- runtime state: IRQs -------------------------------------------------------
NIC_DRIVERS = ("igb", "i40e", "mlx5_core", "virtio-pci")


def standard_irqs(spec: HostSpec) -> tuple[IrqSpec, ...]:
    """Legacy IRQs (timer, i8042, rtc0, acpi), ``PCIe PME, aerdrv`` for PCIe
    ports, two queue vectors per NIC, an admin and two I/O queues per NVMe
    drive. (Vectors for running domains' vfio devices come from
    :func:`vfio_irq_specs`.)"""
    irqs = [IrqSpec(0, "timer", hwirq=2), IrqSpec(1, "i8042", hwirq=1),
            IrqSpec(8, "rtc0", hwirq=8), IrqSpec(9, "acpi", hwirq=9, flow="fasteoi")]
    number, nic, nvme = 24, 0, 0
    for dev in spec.pci:
        names: list[str] = []
        if dev.driver == "pcieport":
            names = ["PCIe PME, aerdrv"]
        elif dev.driver in NIC_DRIVERS:
            names = [f"eth{nic}-TxRx-{q}" for q in range(2)]
            nic += 1
        elif dev.driver == "nvme":
            names = [f"nvme{nvme}q{q}" for q in range(3)]
            nvme += 1
        for hwirq, name in enumerate(names):
            irqs.append(IrqSpec(number, name, chip=f"IR-PCI-MSIX-{dev.address}", hwirq=hwirq))
            number += 1
    return tuple(irqs)


def vfio_irq_specs(spec: HostSpec) -> tuple[IrqSpec, ...]:
    """The vectors vfio-pci requests for the devices of running domains, from
    IRQ 200 up: display and audio functions with MSI (``vfio-msi[0](BDF)``),
    others with two MSI-X vectors (``vfio-msix[N](BDF)``)."""
    irqs, number = [], 200
    for dom in spec.domains:
        for address in dom.pcidevs:
            dev = next(d for d in spec.pci if d.address == address)
            kind = "msi" if dev.pci_class >> 16 in (0x03, 0x04) else "msix"
            for vector in range(1 if kind == "msi" else 2):
                irqs.append(IrqSpec(number, f"vfio-{kind}[{vector}]({address})",
                                    chip=f"IR-PCI-{kind.upper()}-{address}", hwirq=vector))
                number += 1
    return tuple(irqs)


def write_irqs(tree: Tree, spec: HostSpec) -> None:
    """``proc/irq/N/``, ``proc/irq/default_smp_affinity``, ``proc/interrupts``."""
    if not spec.proc:
        return
    irqs = (standard_irqs(spec) if spec.irqs is None else spec.irqs) + vfio_irq_specs(spec)
    nbits = len(spec.possible)
    default = spec.default_smp_affinity
    tree.write("proc/irq/default_smp_affinity",
               cpumask(spec.possible if default is None else default, nbits))
    for irq in irqs:
        write_irq(tree, spec, irq)
    tree.write("proc/interrupts", interrupts_text(spec, irqs))


def add_irq(root: Path, spec: HostSpec, irq: IrqSpec) -> None:
    """An IRQ that appears after the host was built (a guest driver enabling
    MSI-X on a passthrough device): its ``proc/irq/N`` and its line in
    ``proc/interrupts``."""
    irqs = (standard_irqs(spec) if spec.irqs is None else spec.irqs) + vfio_irq_specs(spec)
    tree = Tree(root)
    write_irq(tree, spec, irq)
    tree.write("proc/interrupts", interrupts_text(spec, irqs + (irq,)))


def irq_cpus(spec: HostSpec, irq: IrqSpec) -> tuple[frozenset[int], frozenset[int]]:
    """Affinity and effective CPUs of ``irq``, defaults filled in."""
    affinity = irq.affinity if irq.affinity is not None else frozenset(spec.possible)
    if irq.effective is not None:
        return affinity, irq.effective
    online = sorted(affinity & set(spec.online_cpus)) or sorted(affinity)
    return affinity, frozenset({online[irq.number % len(online)]})


def write_irq(tree: Tree, spec: HostSpec, irq: IrqSpec) -> None:
    base = f"proc/irq/{irq.number}"
    nbits = len(spec.possible)
    affinity, effective = irq_cpus(spec, irq)
    tree.write(f"{base}/smp_affinity", cpumask(affinity, nbits))
    tree.write(f"{base}/smp_affinity_list", format_ids(affinity))
    if irq.effective_file:
        tree.write(f"{base}/effective_affinity", cpumask(effective, nbits))
        tree.write(f"{base}/effective_affinity_list", format_ids(effective))
    tree.write(f"{base}/affinity_hint", cpumask((), nbits))
    tree.write(f"{base}/node", "0")
    tree.write(f"{base}/spurious", "count 0\nunhandled 0\nlast_unhandled 0 ms")
    for action in filter(None, irq.name.split(", ")):
        tree.mkdir(f"{base}/{action}")


def interrupts_text(spec: HostSpec, irqs: Iterable[IrqSpec]) -> str:
    """``proc/interrupts`` in the kernel's column layout, with a few arch lines."""
    online = spec.online_cpus
    irqs = sorted(irqs, key=lambda i: i.number)
    prec = max(3, len(str(irqs[-1].number))) if irqs else 3
    lines = [" " * (prec + 1) + "".join(f"{'CPU' + str(c):>11}" for c in online)]
    for irq in irqs:
        effective = irq_cpus(spec, irq)[1]
        counts = "".join(f" {(irq.number * 37 + c) % 1000 if c in effective else 0:>10}"
                         for c in online)
        action = f"  {irq.name}" if irq.name else ""
        lines.append(f"{irq.number:>{prec}}:{counts} {irq.chip:>8} {irq.hwirq:>{prec}}-"
                     f"{irq.flow:<8}{action}".rstrip())
    for name, text in (("NMI", "Non-maskable interrupts"), ("LOC", "Local timer interrupts")):
        lines.append(f"{name:>{prec}}:" + "".join(f" {0:>10}" for _ in online) + f"   {text}")
    lines.append(f"{'ERR':>{prec}}:          0")
    return "\n".join(lines)


def write_workqueue(tree: Tree, spec: HostSpec) -> None:
    """``sys/devices/virtual/workqueue/cpumask`` (absent before Linux 4.2)."""
    if not spec.proc or not spec.workqueue_file:
        return
    mask = spec.workqueue_mask if spec.workqueue_mask is not None else spec.possible
    tree.write("sys/devices/virtual/workqueue/cpumask", cpumask(mask, len(spec.possible)))


def refuse_irq_writes(root: Path, irq: int, error: str = "EIO") -> None:
    """Make ``proc/irq/IRQ/smp_affinity_list`` refuse writes as a managed IRQ does.

    The file becomes a symlink to a real kernel file that fails every write:
    ``/proc/self/mem`` (writing offset 0, an unmapped address, gives EIO, as
    older kernels answer for managed IRQs) or, with ``error="EPERM"``,
    ``/proc/self/uid_map`` (already written: EPERM, as Linux 6.x answers).
    Both links also fail *reads* (EIO, or a text that is no cpulist): no
    plain file can be readable and refuse a root's write. So call this after
    the host has been read (a snapshot, a plan) and before the write, as a
    test deletes a task's directory to make it vanish.
    """
    target = {"EIO": "/proc/self/mem", "EPERM": "/proc/self/uid_map"}[error]
    path = Path(root) / f"proc/irq/{irq}/smp_affinity_list"
    path.unlink()
    os.symlink(target, path)


# -- runtime state: cgroup v1 cpusets --------------------------------------------
CPUSET = "sys/fs/cgroup/cpuset"


def libvirt_cpusets(spec: HostSpec) -> tuple[tuple[str, frozenset[int]], ...]:
    """The v1 cpuset tree of a host running ``spec.domains`` under libvirt:
    the root, ``machine``, and per domain (started N-th, from 1)
    ``machine/qemu-N-NAME.libvirt-qemu`` with ``emulator``, ``vcpuK`` and
    ``iothreadK`` children; every group holds the online CPUs."""
    online = frozenset(spec.online_cpus)
    groups = [("", online), ("machine", online)]
    for index, dom in enumerate(spec.domains, start=1):
        base = f"machine/qemu-{index}-{dom.name}.libvirt-qemu"
        children = ["emulator"] + [f"vcpu{k}" for k in range(dom.vcpus)]
        children += [f"iothread{k}" for k in range(1, dom.iothreads + 1)]
        groups += [(base, online)] + [(f"{base}/{c}", online) for c in children]
    return tuple(groups)


def write_cpusets(tree: Tree, spec: HostSpec) -> None:
    """``sys/fs/cgroup/cpuset/<group>/`` with the files cgroup v1 shows."""
    if spec.cpusets is None:
        return
    mems = format_ids(range(max(1, spec.numa_nodes)))
    for group, cpus in spec.cpusets:
        base = f"{CPUSET}/{group}" if group else CPUSET
        for name, value in (("cpuset.cpus", format_ids(cpus)),
                            ("cpuset.effective_cpus", format_ids(cpus)),
                            ("cpuset.mems", mems), ("cpuset.effective_mems", mems),
                            ("cpuset.cpu_exclusive", "0"), ("cgroup.procs", ""),
                            ("tasks", ""), ("notify_on_release", "0")):
            tree.write(f"{base}/{name}", value)


def drop_from_cpusets(root: Path, cpu: int) -> None:
    """What cgroup v1 does when ``cpu`` goes offline: remove it from
    ``cpuset.cpus`` and ``cpuset.effective_cpus`` of every non-root cpuset.
    (A fixture has no kernel behind it; tests call this after ``set_online``
    to model the trap.)"""
    base = Path(root) / CPUSET
    for path in sorted(base.rglob("cpuset.*cpus")):
        if path.parent == base or path.name not in ("cpuset.cpus", "cpuset.effective_cpus"):
            continue
        cpus = IdSet.parse(path.read_text()) - {cpu}
        path.write_text(format_ids(cpus) + "\n")


# -- runtime state: libvirt's running domains ------------------------------------
def write_domains(tree: Tree, spec: HostSpec) -> None:
    """``run/libvirt/qemu/NAME.pid`` (no newline, as libvirt writes it) and
    ``NAME.xml``, the ``<domstatus>`` status file."""
    for index, dom in enumerate(spec.domains, start=1):
        base = "run/libvirt/qemu"
        tree.mkdir(base)
        (tree.root / base / f"{dom.name}.pid").write_text(str(dom.pid))
        tree.write(f"{base}/{dom.name}.xml", domain_status_xml(dom, index))
        (tree.mkdir(f"proc/{dom.pid}") / "cmdline").write_bytes(qemu_cmdline(dom))


def qemu_cmdline(dom: DomainSpec) -> bytes:
    """``/proc/PID/cmdline`` of QEMU as libvirt starts it (shortened)."""
    args = ["/usr/bin/qemu-system-x86_64", "-name", f"guest={dom.name},debug-threads=on",
            "-S", "-machine", "pc-q35-7.2,usb=off", "-m", "64", "-smp", str(dom.vcpus),
            "-uuid", dom.uuid, "-no-user-config", "-nodefaults"]
    return b"".join(a.encode() + b"\0" for a in args)


def hide_status_file(root: Path, name: str) -> None:
    """libvirt's status file as an ordinary user meets it (mode 0600, root's):
    a link to a file that refuses even root's read with EACCES (a
    write-only sysctl), as a fixture read as root cannot otherwise show."""
    path = Path(root) / f"run/libvirt/qemu/{name}.xml"
    path.unlink()
    os.symlink("/proc/sys/vm/drop_caches", path)


def domain_status_xml(dom: DomainSpec, index: int) -> str:
    """A libvirt 9 status file, shortened: no qemuCaps flags, fewer devices."""
    vcpus = "".join(f"    <vcpu id='{n}' pid='{tid}'/>\n" for n, tid in dom.vcpu_tids().items())
    iothreads = f"    <iothreads>{dom.iothreads}</iothreads>\n" if dom.iothreads else ""
    hostdevs = "".join(
        "      <hostdev mode='subsystem' type='pci' managed='yes'>\n        <source>\n"
        f"          <address domain='0x{a[0:4]}' bus='0x{a[5:7]}' slot='0x{a[8:10]}' "
        f"function='0x{a[11]}'/>\n        </source>\n      </hostdev>\n" for a in dom.pcidevs)
    lib = f"/var/lib/libvirt/qemu/domain-{index}-{dom.name}"
    return (
        "<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n"
        "OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:\n"
        f"  virsh edit {dom.name}\nor other application using the libvirt API.\n-->\n\n"
        f"<domstatus state='running' reason='booted' pid='{dom.pid}'>\n"
        f"  <monitor path='{lib}/monitor.sock' type='unix'/>\n"
        f"  <namespaces>\n    <mount/>\n  </namespaces>\n  <vcpus>\n{vcpus}  </vcpus>\n"
        "  <qemuCaps>\n    <flag name='kvm'/>\n  </qemuCaps>\n"
        f"  <libDir path='{lib}'/>\n  <chardevStdioLogd/>\n  <rememberOwner/>\n"
        f"  <domain type='kvm' id='{index}'>\n    <name>{dom.name}</name>\n"
        f"    <uuid>{dom.uuid}</uuid>\n    <memory unit='KiB'>65536</memory>\n"
        f"    <vcpu placement='static'>{dom.vcpus}</vcpu>\n{iothreads}"
        "    <resource>\n      <partition>/machine</partition>\n    </resource>\n"
        "    <os>\n      <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>\n    </os>\n"
        f"    <devices>\n      <emulator>/usr/bin/qemu-system-x86_64</emulator>\n{hostdevs}"
        "      <memballoon model='none'/>\n    </devices>\n  </domain>\n</domstatus>")


WRITERS: list[Callable[[Tree, HostSpec], None]] = [
    write_cpus, write_nodes, write_pci, write_tasks, write_irqs, write_workqueue,
    write_cpusets, write_domains]


def build_host(root: Path, spec: HostSpec) -> Path:
    """Write the sysfs tree of ``spec`` below ``root``; return ``root``."""
    tree = Tree(root)
    for writer in WRITERS:
        writer(tree, spec)
    return Path(root)


# -- named hosts ------------------------------------------------------------
AMD = 0x1022


REDHAWK_RT = DomainSpec("RedHawk-8.4-RT", pid=7001, vcpus=4, pcidevs=("0000:21:00.0",))


def threadripper_5975wx() -> HostSpec:
    """AMD Threadripper PRO 5975WX, NPS4: 32 cores x 2 threads, 4 nodes of
    8 cores; GPU 21:00.0 alone in IOMMU group 10 on node 2, GPU+audio
    22:00.0/22:00.1 sharing group 11 on node 1. Runtime: the standard tasks
    and IRQs, and :data:`REDHAWK_RT` running (4 vCPUs, not pinned yet) with
    21:00.0 passed through (vfio-msi IRQ 200); cgroup v2 (no v1 cpusets)."""
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
                    numa_nodes=4, pci=pci, proc=True, domains=(REDHAWK_RT,))


def threadripper_cgroup_v1() -> HostSpec:
    """The Threadripper on a cgroup v1 (hybrid) host: libvirt's cpuset tree
    for the running domain (``machine/qemu-1-RedHawk-8.4-RT.libvirt-qemu/...``)."""
    spec = dataclasses.replace(threadripper_5975wx(), name="threadripper_cgroup_v1")
    return dataclasses.replace(spec, cpusets=libvirt_cpusets(spec))


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
                    core_ids=core_ids, numa_nodes=2, pci=pci, proc=True)


def small_4c1t() -> HostSpec:
    """4 CPUs without SMT on one node; PCI like a VM: no NUMA affinity, no IOMMU."""
    pci = (
        PciSpec("0000:00:00.0", 0x060000, -1),
        PciSpec("0000:00:03.0", 0x020000, -1, driver="virtio-pci", vendor=0x1AF4),
    )
    return HostSpec("small_4c1t", cores_per_die=4, pci=pci, proc=True)


def offline_4c2t() -> HostSpec:
    """4 cores x 2 threads on nodes 0-1, memory-only node 2; CPUs 5 and 7
    (second threads of cores 1 and 3) are offline."""
    return HostSpec("offline_4c2t", cores_per_die=4, threads_per_core=2, numa_nodes=2,
                    memory_only_nodes=1, offline=frozenset({5, 7}), proc=True)


def multidie_2s2d4c2t() -> HostSpec:
    """2 packages x 2 dies x 4 cores x 2 threads; ``die_id`` and ``core_id``
    restart in every die and package; one node per die."""
    return HostSpec("multidie_2s2d4c2t", packages=2, dies_per_package=2, cores_per_die=4,
                    threads_per_core=2, numa_nodes=4, proc=True)


def legacy_1s2c2t() -> HostSpec:
    """An old kernel without NUMA, ``die_id`` or ``core_cpus_list``: 2 cores x 2 threads."""
    return HostSpec("legacy_1s2c2t", cores_per_die=2, threads_per_core=2, numa=False,
                    die_id_file=False, core_cpus_files=False, proc=True, workqueue_file=False)


def big(cpus: int = 512, nodes: int = 16, packages: int = 2) -> HostSpec:
    """A large host for benchmarks: ``cpus`` CPUs, 2 threads per core,
    ``packages`` packages, ``nodes`` nodes sharing the cores evenly."""
    if cpus % (2 * packages):
        raise ValueError(f"{cpus} CPUs do not split into {packages} packages of 2-thread cores")
    return HostSpec(f"big_{packages}s{cpus // 2 // packages}c2t", packages=packages,
                    cores_per_die=cpus // 2 // packages, threads_per_core=2, numa_nodes=nodes)


NAMED_HOSTS: dict[str, Callable[[], HostSpec]] = {
    f.__name__: f
    for f in (threadripper_5975wx, threadripper_cgroup_v1, xeon_2s20c2t, small_4c1t, offline_4c2t,
              multidie_2s2d4c2t, legacy_1s2c2t)
}


# -- sysfs as some real machines write it ----------------------------------------
def renumber_nodes(root: Path, mapping: dict[int, int]) -> None:
    """Give the NUMA nodes of a built tree other ids, as firmware may number
    them: ``{0: 1, 1: 2}`` makes a host whose node 0 is offline (POWER
    LPARs, some arm64 servers): no ``node0`` directory, ``online`` without
    0, ``possible`` from 0. Moves ``nodeN/`` (and its ``meminfo`` lines),
    the ``cpuK/nodeN`` links, the global node lists, every PCI
    ``numa_node`` and cgroup v1 ``cpuset.mems``. Nodes not in ``mapping``
    keep their id."""
    root = Path(root)
    node_dir = root / NODE
    old = sorted(int(p.name[4:]) for p in node_dir.glob("node[0-9]*"))
    new = {n: mapping.get(n, n) for n in old}
    for n in old:  # two steps, so that 0->1 and 1->2 do not collide
        (node_dir / f"node{n}").rename(node_dir / f"renumbered{n}")
    for n in old:
        target = node_dir / f"node{new[n]}"
        (node_dir / f"renumbered{n}").rename(target)
        meminfo = target / "meminfo"
        if meminfo.exists():
            meminfo.write_text(meminfo.read_text().replace(f"Node {n} ", f"Node {new[n]} "))
    for link in sorted((root / CPU).glob("cpu[0-9]*/node[0-9]*")):
        n = int(link.name[4:])
        link.unlink()
        os.symlink(f"../../node/node{new[n]}", link.parent / f"node{new[n]}")
    with_cpus = IdSet.parse((node_dir / "has_cpu").read_text())
    online = sorted(new.values())
    for name in ("online", "has_memory", "has_normal_memory"):
        (node_dir / name).write_text(format_ids(online) + "\n")
    (node_dir / "has_cpu").write_text(format_ids(new[n] for n in with_cpus) + "\n")
    (node_dir / "possible").write_text(format_ids(range(max(online) + 1)) + "\n")
    for path in sorted((root / "sys/devices").rglob("numa_node")):
        n = int(path.read_text())
        path.write_text(f"{new.get(n, n)}\n")
    for path in sorted((root / CPUSET).rglob("cpuset.*mems")):
        mems = IdSet.parse(path.read_text())
        path.write_text(format_ids(new.get(n, n) for n in mems) + "\n")


def rewrite_values(root: Path, below: str, rewrite: Callable[[str], str]) -> list[Path]:
    """Rewrite every one-line file below ``root/below`` with ``rewrite(value)``
    (``value`` without its newline), as a kernel that formats values
    otherwise shows them: ``lambda v: v + "\\0"`` for device-tree-derived
    values ending in NUL. Multi-line files and empty values are kept.
    Returns the files rewritten."""
    changed = []
    for path in sorted(Path(root, below).rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        text = path.read_text()
        if text.count("\n") != 1 or not text.endswith("\n") or text == "\n":
            continue
        path.write_text(rewrite(text[:-1]))
        changed.append(path)
    return changed


# -- what the kernel does on its own -------------------------------------------------
# A fixture tree has no kernel behind it: kvmrt's writes land as written and
# nothing reacts. These functions make the reactions a real kernel makes, so
# that tests can put them between kvmrt's steps (as drop_from_cpusets does).
_ALLOWED_LIST_LINE = re.compile(r"^Cpus_allowed_list:.*$", re.MULTILINE)
_ALLOWED_LINE = re.compile(r"^Cpus_allowed:\t(\S*)$", re.MULTILINE)


def online_now(root: Path) -> frozenset[int]:
    """The CPUs whose ``cpuN/online`` reads 1 (or that have no such file)."""
    base = Path(root) / CPU
    found = set()
    for d in base.glob("cpu[0-9]*"):
        online = d / "online"
        if not online.exists() or online.read_text().strip() == "1":
            found.add(int(d.name[3:]))
    return frozenset(found)


def thread_affinity(root: Path, pid: int, tid: int | None = None) -> frozenset[int]:
    status = (Path(root) / f"proc/{pid}/task/{pid if tid is None else tid}/status").read_text()
    m = _ALLOWED_LIST_LINE.search(status)
    return frozenset(IdSet.parse(m.group(0).split(":", 1)[1].strip()))


def kernel_sets_affinity(root: Path, pid: int, tid: int | None, cpus: Iterable[int]) -> None:
    """The thread's affinity becomes ``cpus`` as the kernel shows it in ``status``."""
    path = Path(root) / f"proc/{pid}/task/{pid if tid is None else tid}/status"
    status = path.read_text()
    nbits = len(_ALLOWED_LINE.search(status).group(1).replace(",", "")) * 4
    status = _ALLOWED_LINE.sub(lambda _: f"Cpus_allowed:\t{cpumask(cpus, nbits)}", status)
    status = _ALLOWED_LIST_LINE.sub(lambda _: f"Cpus_allowed_list:\t{format_ids(cpus)}", status)
    path.write_text(status)


def sched_setaffinity(root: Path, pid: int, cpus: Iterable[int]) -> frozenset[int]:
    """``taskset -p -c CPUS PID``: the kernel keeps only the online CPUs
    (the thread's cpuset holds no other); return what it kept."""
    kept = frozenset(cpus) & online_now(root)
    if not kept:
        raise OSError(22, "Invalid argument")
    kernel_sets_affinity(root, pid, None, kept)
    return kept


def _threads(root: Path) -> Iterator[tuple[int, int, Path]]:
    for task in sorted(Path(root).glob("proc/[0-9]*/task/[0-9]*")):
        yield int(task.parent.parent.name), int(task.name), task


def cpu_went_offline(root: Path, cpu: int) -> None:
    """After ``cpuN/online`` became 0: the CPU leaves every movable thread's
    affinity (cpuset's hotplug update) and every non-root v1 cpuset; a
    thread left with no CPU falls back to the online ones ("process N no
    longer affine to cpu"). Per-CPU kernel threads keep theirs (parked)."""
    online = online_now(root) - {cpu}
    for pid, tid, task in _threads(root):
        flags = int((task / "stat").read_text().rsplit(")", 1)[1].split()[6])
        allowed = thread_affinity(root, pid, tid)
        if flags & PF_NO_SETAFFINITY or cpu not in allowed:
            continue
        kernel_sets_affinity(root, pid, tid, (allowed - {cpu}) or online)
    if (Path(root) / CPUSET).exists():
        drop_from_cpusets(root, cpu)


def kthread_reset_on_hotplug(root: Path, pid: int, cpus: Iterable[int]) -> None:
    """What CPU hotplug does to a node- or rcu_node-bound kernel thread
    (kswapdN, kcompactdN, rcub/N): its affinity becomes its CPUs that are
    online."""
    kernel_sets_affinity(root, pid, None, frozenset(cpus) & online_now(root))


def irq_thread_follows(root: Path, pid: int, irq: int) -> None:
    """A threaded IRQ handler (``irq/N-name``) at its IRQ's next interrupt:
    its affinity becomes the IRQ's effective CPUs (irq_thread_check_affinity)."""
    effective = Path(root) / f"proc/irq/{irq}/effective_affinity_list"
    kernel_sets_affinity(root, pid, None, IdSet.parse(effective.read_text().strip()))


def irq_effective_moves(root: Path, irq: int) -> None:
    """The kernel delivers ``irq`` to one online CPU of its affinity (the
    lowest here) once it is set; ``effective_affinity_list`` shows it."""
    base = Path(root) / f"proc/irq/{irq}"
    allowed = IdSet.parse((base / "smp_affinity_list").read_text().strip())
    (base / "effective_affinity_list").write_text(
        format_ids({min(frozenset(allowed) & online_now(root))}) + "\n")


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[bool]:
    """Make ``path`` refuse every write, root's too, with EPERM (as Linux 6.x
    answers for a managed IRQ or IRQ 0 and 2) while it stays readable:
    ``chattr +i`` until the block ends. Yields False where the file system
    of ``path`` cannot do that."""
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
