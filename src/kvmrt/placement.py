"""Placement: where a VM's threads run, as a pure function (SPEC 2 and 3).

:func:`place` resolves every ``auto`` of a VM against a host topology and
gives the vCPU→CPU map, the emulator CPUs, the SMT siblings an rt VM takes
offline, the CPUs it shields, its IRQ CPU, NUMA nodes and memory locking.

Decisions where the spec is silent:

- An rt VM shields every CPU it *owns* (its cpuset plus the SMT siblings of
  the cores it touches), so a sibling brought back online by hand still
  gets no host work.
- ``irq_cpu`` is set only for an rt VM with passthrough devices: it is the
  highest non-vCPU CPU, where the devices' vfio interrupts go.
- A VM whose cpuset is empty is not pinned: its vCPU and emulator CPU sets
  are empty (meaning "anywhere").
- A non-rt VM does not use the offline CPUs of its cpuset; an rt VM treats
  an offline CPU whose topology the kernel hides as one of its SMT
  siblings already offline (owned, not usable).
- When an rt VM has too few CPUs (a validation error), the placement falls
  back to the non-rt sharing rule so that it can still be shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Iterable

from kvmrt.config.model import AUTO, VmConfig
from kvmrt.errors import UnknownHostObject
from kvmrt.host.model import Topology


@dataclass(frozen=True)
class Placement:
    vm: VmConfig
    cpuset: frozenset[int]
    owned_cpus: frozenset[int]
    usable_cpus: frozenset[int]
    nr_vcpus: int
    cpu_topology: tuple[int, int, int]
    vcpu_cpus: tuple[frozenset[int], ...]
    emulator_cpus: frozenset[int]
    offline_cpus: frozenset[int]
    shielded_cpus: frozenset[int]
    irq_cpu: int | None
    numatune: frozenset[int] | None
    rt_memory: bool

    @property
    def rt(self) -> bool:
        return bool(self.vm.rt)


def place(vm: VmConfig, topology: Topology) -> Placement:
    """The placement of ``vm`` on ``topology``.

    Raises :class:`kvmrt.errors.UnknownHostObject` when the cpuset names
    something the host lacks (the validator reports that first).
    """
    cpuset = vm.cpuset.resolve(topology)
    rt = bool(vm.rt)  # each attribute read once: vm.x looks up a default
    if rt:
        owned, usable = rt_cpus(cpuset, topology)
    else:
        owned, usable = cpuset, cpuset - offline_cpus(cpuset, topology)
    nr_vcpus = vm.nr_vcpus
    nr_vcpus = len(usable) - 1 if nr_vcpus is AUTO else nr_vcpus
    vcpu_cpus, emulator = _assign(sorted(usable), nr_vcpus)
    irq_cpu = max(emulator) if rt and emulator and vm.pcidevs else None
    cpu_topology, rt_memory = vm.cpu_topology, vm.rt_memory
    return Placement(
        vm=vm,
        cpuset=cpuset,
        owned_cpus=owned,
        usable_cpus=usable,
        nr_vcpus=nr_vcpus,
        cpu_topology=(1, nr_vcpus, 1) if cpu_topology is AUTO else cpu_topology,
        vcpu_cpus=vcpu_cpus,
        emulator_cpus=emulator,
        offline_cpus=owned - usable,
        shielded_cpus=owned if rt else frozenset(),
        irq_cpu=irq_cpu,
        numatune=_numatune(vm, cpuset, topology),
        rt_memory=rt if rt_memory is AUTO else rt_memory,
    )


def try_place(vm: VmConfig, topology: Topology) -> Placement | None:
    """The placement of ``vm``, or None where it has none to show: an
    attribute of its section failed to parse, it has no name, or its
    cpuset names something the host lacks (the validator reports each)."""
    if vm.invalid or not vm.name:
        return None
    try:
        return place(vm, topology)
    except UnknownHostObject:
        return None


def place_all(vms: Iterable[VmConfig], topology: Topology) -> list[Placement]:
    """The placements of those of ``vms`` that can be placed (:func:`try_place`)."""
    return [p for p in (try_place(vm, topology) for vm in vms) if p is not None]


def rt_cpus(cpuset: frozenset[int], topology: Topology) -> tuple[frozenset[int], frozenset[int]]:
    """(owned, usable) CPUs of an rt VM.

    The VM owns every hardware thread of every core its cpuset touches; of
    each such core the lowest thread in the cpuset stays usable.
    An offline CPU whose topology the kernel hides (typically a sibling
    already taken offline, by kvmrt or by ``nosmt``) is owned, never usable.
    """
    owned: set[int] = set()
    usable: set[int] = set()
    for cpu in cpuset:
        siblings = topology.siblings(cpu)
        owned |= siblings
        info = topology.cpus.get(cpu)
        if info is None or not info.topology_hidden:
            usable.add(min(c for c in siblings & cpuset if not _hidden(topology, c)))
    return frozenset(owned), frozenset(usable)


def offline_cpus(cpus: frozenset[int], topology: Topology) -> frozenset[int]:
    info = topology.cpus
    return frozenset(c for c in cpus if c in info and not info[c].online)


def _hidden(topology: Topology, cpu: int) -> bool:
    info = topology.cpus.get(cpu)
    return info is not None and info.topology_hidden


def _assign(cpus: list[int], nr_vcpus: int) -> tuple[tuple[frozenset[int], ...], frozenset[int]]:
    """vCPU i gets the i-th lowest CPU; the rest run the emulator.

    With too few CPUs, vCPU i gets CPU i mod n and the emulator floats over
    the whole set (SPEC 2); an rt VM never shares, which the validator
    reports as an error.
    """
    n = len(cpus)
    count = max(nr_vcpus, 0)
    if n == 0:
        return tuple(frozenset() for _ in range(count)), frozenset()
    if n > count:
        vcpus = tuple(frozenset({cpus[i]}) for i in range(count))
        return vcpus, frozenset(cpus[count:])
    vcpus = tuple(frozenset({cpus[i % n]}) for i in range(count))
    return vcpus, frozenset(cpus)


def _numatune(vm: VmConfig, cpuset: frozenset[int], topology: Topology) -> frozenset[int] | None:
    numatune = vm.numatune
    if numatune is AUTO:
        return topology.nodes_of(cpuset) or None
    return frozenset(numatune) or None


def placement_json(p: Placement) -> dict:
    """The interpreted VM as ``kvmrt-show-config --json`` prints it."""
    vm = p.vm
    return {
        "uuid": vm.uuid,
        "name": vm.name,
        "title": vm.title,
        "description": vm.description,
        "rt": bool(vm.rt),
        "disabled": bool(vm.disabled),
        "autostart": bool(vm.autostart),
        "hide_kvm": bool(vm.hide_kvm),
        "rt_memory": p.rt_memory,
        "nr_vcpus": p.nr_vcpus,
        "cpu_topology": list(p.cpu_topology),
        "cpuset": sorted(p.cpuset),
        "owned_cpus": sorted(p.owned_cpus),
        "usable_cpus": sorted(p.usable_cpus),
        "vcpu_cpus": [sorted(c) for c in p.vcpu_cpus],
        "emulator_cpus": sorted(p.emulator_cpus),
        "offline_cpus": sorted(p.offline_cpus),
        "shielded_cpus": sorted(p.shielded_cpus),
        "irq_cpu": p.irq_cpu,
        "numatune": sorted(p.numatune) if p.numatune is not None else None,
        "pcidevs": [str(a) for a in vm.pcidevs],
    }
