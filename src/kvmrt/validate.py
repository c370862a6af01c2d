"""The validator (SPEC 4): every rule, each with a stable code.

Errors must be fixed before a VM boots or a config is saved; warnings point
at a configuration that may not be optimal. Each diagnostic names the VM(s),
the attribute, the config line and the CPUs, nodes or devices concerned.

Codes (stable; scripts may match on them):

errors   syntax, bad-uuid, unknown-attribute, bad-value, missing-name,
         duplicate-name, unknown-cpu, unknown-node, unknown-device,
         rt-overlap, rt-empty-cpuset, rt-too-few-cpus, rt-unlocked-memory,
         rt-all-cpus, offline-refused, pci-shared, iommu-split,
         topology-mismatch, vcpus-below-one
warnings rt-multi-node, node-shared, rt-numatune, numatune-shared,
         pci-remote-node, undersupplied, offline-cpus, rt-boot-cpu,
         not-defined, out-of-step, libvirt-autostart (with libvirt's domains)

A VM with a malformed value gets only its load error: the rules that depend
on placement would repeat it. ``numatune-shared`` looks only at VMs with an
explicit numatune: an unrestricted VM is not reported, and ``auto`` follows
the cpuset, which ``node-shared`` already reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from kvmrt import diagnostics as diag
from kvmrt.config.file import Config
from kvmrt.config.model import AUTO, VmConfig
from kvmrt.sets import format_ids
from kvmrt.errors import KvmrtError, UnknownHostObject
from kvmrt.host.model import Host, Topology
from kvmrt.placement import Placement, place

if TYPE_CHECKING:  # libvirt and lxml are loaded only when there are domains
    from kvmrt.libvirt_sync.domains import Domain


class _Report:
    """Collects diagnostics, filling in file, line and VM from the VM."""

    def __init__(self, path: str | None, *, warnings: bool = True) -> None:
        self.path = path
        self.warnings = warnings
        self.items: list[diag.Diagnostic] = []

    def add(self, make, code: str, message: str, vm: VmConfig, attribute: str | None,
            *others: VmConfig) -> None:
        vms = (vm.label, *[o.label for o in others]) if others else (vm.label,)
        self.items.append(make(
            code, message, vms=vms,
            attribute=attribute, line=vm.line_of(attribute), file=self.path))

    def error(self, code, message, vm, attribute, *others) -> None:
        self.add(diag.error, code, message, vm, attribute, *others)

    def warning(self, code, message, vm, attribute, *others) -> None:
        if self.warnings:
            self.add(diag.warning, code, message, vm, attribute, *others)


class ConfigHasErrors(KvmrtError):
    """The config (or the VMs named) does not validate; nothing was changed.
    ``diagnostics``: the validator's errors."""

    def __init__(self, path: str | None, diagnostics: list[diag.Diagnostic]) -> None:
        super().__init__(f"{path}: {len(diagnostics)} error(s); fix them first "
                         "(kvmrt-edit-config)")
        self.diagnostics = diagnostics


def require_valid(config: Config, host: Host, **selection) -> None:
    """Raise :class:`ConfigHasErrors` when the config (``selection``: as
    :func:`validate` takes it) has errors on this host; every tool that
    changes the host or libvirt refuses such a config."""
    errors = validate(config, host, errors_only=True, **selection)
    if errors:
        raise ConfigHasErrors(config.path, errors)


def validate(config: Config, host: Host, *, include_disabled: bool = False,
             names: tuple[str, ...] = (),
             domains: Mapping[str, Domain] | None = None,
             errors_only: bool = False) -> list[diag.Diagnostic]:
    """All diagnostics of the config on this host, sorted by line.

    With ``names``, cross-VM rules still look at every active VM, but only
    diagnostics that concern a named VM (or no VM at all) are returned.
    ``domains`` (libvirt's domains by lower-case UUID) adds the libvirt
    rules. ``errors_only`` returns the errors alone, sooner: the cross-VM
    rules that can only warn (shared NUMA nodes) are not looked at.
    """
    return validate_and_place(config, host, include_disabled=include_disabled, names=names,
                              domains=domains, errors_only=errors_only)[0]


def validate_and_place(config: Config, host: Host, *, include_disabled: bool = False,
                       names: tuple[str, ...] = (),
                       domains: Mapping[str, Domain] | None = None,
                       errors_only: bool = False
                       ) -> tuple[list[diag.Diagnostic], list[Placement]]:
    """:func:`validate`, and the placements it worked out on the way: one
    per VM it looked at (the active and the named ones) that has a name, no
    malformed value and a cpuset the host has, in config order."""
    chosen = {id(vm) for vm in config.active(include_disabled=include_disabled)}
    chosen |= {id(vm) for vm in config.select(names)} if names else set()
    vms = [vm for vm in config.vms if id(vm) in chosen]
    report = _Report(config.path, warnings=not errors_only)
    placements = {}
    for vm in vms:
        if vm.invalid or not vm.values.get("name"):
            continue
        p = _check_vm(vm, host, report)
        if p is not None:
            placements[vm.uuid] = p
            if domains is not None:
                _check_libvirt(p, domains.get(vm.uuid.lower()), report)
    _check_cross(list(placements.values()), host, report)
    found = config.problems + report.items
    if errors_only:
        found = [d for d in found if d.is_error]
    if names:
        wanted = {vm.label for vm in config.select(names)}
        found = [d for d in found if not d.vms or wanted & set(d.vms)]
    return sorted(found, key=diag.sort_key), list(placements.values())


def _check_vm(vm: VmConfig, host: Host, report: _Report) -> Placement | None:
    topology = host.topology
    _check_numatune_nodes(vm, host, report)
    _check_pci_exists(vm, host, report)
    try:
        p = place(vm, topology)
    except UnknownHostObject as exc:
        report.error("unknown-cpu", f"{exc} in {str(vm.cpuset)!r}", vm, "cpuset")
        return None
    _check_vcpus(p, report)
    if vm.rt:
        _check_rt(p, host, report)
        _check_unpluggable(p, host, report)
        _check_boot_cpu(p, report)
    else:
        _check_non_rt(p, report)
    _check_pci_nodes(p, host, report)
    return p


def _check_non_rt(p: Placement, report: _Report) -> None:
    if p.cpuset - p.usable_cpus:
        report.warning("offline-cpus", f"CPUs {format_ids(p.cpuset - p.usable_cpus)} of the "
                       "cpuset are offline and are not used", p.vm, "cpuset")
    if p.cpuset and len(p.usable_cpus) < p.nr_vcpus:
        report.warning(
            "undersupplied", f"{p.nr_vcpus} vCPUs on {len(p.usable_cpus)} CPUs "
            f"({format_ids(p.usable_cpus)}): vCPUs will share CPUs", p.vm, "cpuset")


def _check_numatune_nodes(vm: VmConfig, host: Host, report: _Report) -> None:
    if vm.numatune is AUTO:
        return
    missing = set(vm.numatune) - set(host.topology.nodes)
    if missing:
        report.error("unknown-node", f"NUMA node {format_ids(missing)} does not exist "
                     f"(host has nodes {format_ids(host.topology.nodes)})", vm, "numatune")


def _check_pci_exists(vm: VmConfig, host: Host, report: _Report) -> None:
    for address in vm.pcidevs:
        if address not in host.pci:
            report.error("unknown-device", f"PCI device {address} does not exist on this host",
                         vm, "pcidevs")
            continue
        missing = sorted(m for m in host.group_members(address)
                         if m not in vm.pcidevs and not _is_bridge(host, m))
        if missing:
            group = host.pci[address].iommu_group
            report.error(
                "iommu-split", f"IOMMU group {group} of {address} is split: also pass "
                f"{' '.join(str(m) for m in missing)}", vm, "pcidevs")


def _is_bridge(host: Host, address) -> bool:
    dev = host.pci.get(address)
    return dev is not None and dev.bridge


def _check_vcpus(p: Placement, report: _Report) -> None:
    vm = p.vm
    if vm.rt and not p.cpuset:
        return  # reported as rt-empty-cpuset
    if p.nr_vcpus < 1:
        how = (f"nr_vcpus = auto gives {p.nr_vcpus} ({len(p.usable_cpus)} usable CPUs "
               "in the cpuset, minus one)" if vm.nr_vcpus is AUTO
               else f"nr_vcpus is {p.nr_vcpus}; a VM needs at least 1")
        report.error("vcpus-below-one", how, vm, "nr_vcpus")
        return
    s, c, t = p.cpu_topology
    if s * c * t != p.nr_vcpus:
        report.error("topology-mismatch", f"{s},{c},{t} gives {s * c * t} vCPUs but "
                     f"nr_vcpus is {p.nr_vcpus}", vm, "cpu_topology")


def _check_rt(p: Placement, host: Host, report: _Report) -> None:
    vm = p.vm
    if not p.cpuset:
        report.error("rt-empty-cpuset", "an rt VM needs a cpuset (at least nr_vcpus + 1 "
                     "CPUs of its own)", vm, "cpuset")
    elif p.nr_vcpus >= 1 and len(p.usable_cpus) < p.nr_vcpus + 1:
        report.error(
            "rt-too-few-cpus", f"{len(p.usable_cpus)} usable CPUs "
            f"({format_ids(p.usable_cpus)}, one per core) for {p.nr_vcpus} vCPUs; an rt VM "
            f"needs {p.nr_vcpus + 1} (one per vCPU plus one for the emulator)", vm, "cpuset")
    if not p.rt_memory:
        report.error("rt-unlocked-memory", "rt = True needs rt_memory = True or auto "
                     "(guest memory must be locked)", vm, "rt_memory")
    nodes = host.topology.nodes_of(p.cpuset)
    if len(nodes) > 1:
        report.warning("rt-multi-node", f"cpuset spans NUMA nodes {format_ids(nodes)}; "
                       "an rt VM is best kept on one node", vm, "cpuset")
    if p.numatune is None:
        report.warning("rt-numatune", "memory is not bound to NUMA nodes; use numatune = "
                       "auto", vm, "numatune")
    elif nodes and p.numatune <= set(host.topology.nodes) and not p.numatune <= nodes:
        report.warning("rt-numatune", f"numatune nodes {format_ids(p.numatune - nodes)} are "
                       f"not among the cpuset's nodes {format_ids(nodes)}", vm, "numatune")


def _check_libvirt(p: Placement, domain: Domain | None, report: _Report) -> None:
    from kvmrt.libvirt_sync.domxml import apply_config
    from kvmrt.libvirt_sync.sync import not_defined

    vm = p.vm
    if domain is None:
        report.warning("not-defined", not_defined(vm, report.path), vm, None)
        return
    if apply_config(domain.xml, p) != domain.xml:  # the name is part of the XML
        report.warning("out-of-step", f"libvirt's XML of domain {domain.name!r} differs from "
                       "the config; run kvmrt-sync-config (-q shows the diff)", vm, None)
    if domain.autostart:
        report.warning("libvirt-autostart", "libvirt's own autostart is on, so the VM would "
                       f"boot untuned; run: virsh autostart --disable {domain.name}", vm, None)


# The CPU the kernel boots on. It keeps housekeeping work (nohz_full= and
# isolcpus= leave it out), and is often not hotpluggable.
BOOT_CPU = 0


def _check_boot_cpu(p: Placement, report: _Report) -> None:
    if BOOT_CPU in p.cpuset:
        report.warning("rt-boot-cpu", f"cpuset contains CPU {BOOT_CPU}, the boot CPU: the "
                       "kernel keeps its housekeeping there (nohz_full= and isolcpus= never "
                       "include it, unbound work and timers land on it) and often cannot "
                       f"take it offline; leave CPU {BOOT_CPU} and its core to the host",
                       p.vm, "cpuset")


def _check_unpluggable(p: Placement, host: Host, report: _Report) -> None:
    stuck = sorted(c for c in p.offline_cpus
                   if c in host.topology.cpus and not host.topology.cpus[c].hotpluggable)
    if stuck:
        report.error("offline-refused", f"CPU {format_ids(stuck)} would have to go offline "
                     "(SMT sibling of a CPU in the cpuset) but the kernel cannot take it "
                     "offline; leave its core out of the cpuset", p.vm, "cpuset")


def _check_pci_nodes(p: Placement, host: Host, report: _Report) -> None:
    nodes = host.topology.nodes_of(p.cpuset)
    for address in p.vm.pcidevs:
        dev = host.pci.get(address)
        if nodes and dev is not None and dev.numa_node is not None \
                and dev.numa_node not in nodes:
            report.warning("pci-remote-node", f"{address} sits on NUMA node {dev.numa_node}, "
                           f"the cpuset uses nodes {format_ids(nodes)}", p.vm, "pcidevs")


@dataclass(frozen=True)
class _Facts:
    """What the cross-VM rules compare of one VM, worked out once."""

    p: Placement
    rt: bool
    cpus: frozenset[int]   # what it holds: owned CPUs (rt), else the cpuset
    nodes: frozenset[int]  # the NUMA nodes of the cpuset
    pcidevs: frozenset

    @classmethod
    def of(cls, p: Placement, topology: Topology) -> "_Facts":
        rt = p.rt
        return cls(p, rt, p.owned_cpus if rt else p.cpuset, topology.nodes_of(p.cpuset),
                   frozenset(p.vm.pcidevs))


def _check_cross(placements: list[Placement], host: Host, report: _Report) -> None:
    facts = [_Facts.of(p, host.topology) for p in placements]
    for i, j in sorted(_pairs(facts, nodes=report.warnings)):
        _check_pair(facts[i], facts[j], report, first=True)
        _check_pair(facts[j], facts[i], report, first=False)
    rt = [p for p in placements if p.rt and p.owned_cpus]
    rt_owned = frozenset().union(*(p.owned_cpus for p in rt))
    if rt_owned and not host.topology.online_cpus - rt_owned:
        first, others = rt[0], [p.vm for p in rt[1:]]
        report.error("rt-all-cpus", f"the rt VMs together take every host CPU "
                     f"({format_ids(rt_owned)}); leave at least one for the host OS",
                     first.vm, "cpuset", *others)


def _pairs(facts: list[_Facts], *, nodes: bool) -> set[tuple[int, int]]:
    """Index pairs (i < j) of VMs that share a device, or where one is rt and
    the other touches its CPUs or (``nodes``: the rules that warn) its NUMA
    nodes: the only pairs a cross-VM rule can fire on. Indexing keeps a
    10,000-VM config linear in its VMs."""
    by_key: dict[tuple, list[int]] = {}
    for i, f in enumerate(facts):
        keys = [("pci", a) for a in f.pcidevs]
        keys += [("cpu", c) for c in f.cpus]
        if nodes:
            keys += [("node", n) for n in f.nodes]
            keys += [("node", n) for n in f.p.numatune or ()]
        for key in keys:
            by_key.setdefault(key, []).append(i)
    pairs: set[tuple[int, int]] = set()
    for key, users in by_key.items():
        if len(users) < 2:
            continue
        anchors = users if key[0] == "pci" else [i for i in users if facts[i].rt]
        for a in anchors:
            pairs.update((a, b) if a < b else (b, a) for b in users if b != a)
    return pairs


def _check_pair(rt: _Facts, other: _Facts, report: _Report, *, first: bool) -> None:
    """Rules where ``rt`` is an rt VM and ``other`` any other VM; and PCI sharing.

    Called for both orders of each pair; ``first`` is true for config order,
    so that a finding between two rt VMs, or a shared device, is reported
    once.
    """
    mine, theirs = rt.p.vm, other.p.vm
    shared = rt.pcidevs & other.pcidevs
    if shared and first:
        report.error("pci-shared", f"{' '.join(str(a) for a in sorted(shared))} already given "
                     f"to {mine.label}{_at(mine, 'pcidevs')}", theirs, "pcidevs", mine)
    if not rt.rt:
        return
    overlap = rt.p.owned_cpus & other.cpus
    if overlap and (first or not other.rt):
        report.error("rt-overlap", f"CPUs {format_ids(overlap)} (cpuset plus the SMT "
                     f"siblings it owns) are also used by {theirs.label}"
                     f"{_at(theirs, 'cpuset')}", mine, "cpuset", theirs)
    shared_nodes = other.nodes & rt.nodes
    if shared_nodes and (first or not other.rt):
        report.warning("node-shared", f"cpuset uses NUMA node {format_ids(shared_nodes)}, "
                       f"which rt VM {mine.label} uses", theirs, "cpuset", mine)
    numatune = other.p.numatune
    if theirs.numatune is not AUTO and numatune and numatune & rt.nodes:
        report.warning("numatune-shared", f"numatune includes NUMA node "
                       f"{format_ids(numatune & rt.nodes)}, which rt VM {mine.label} "
                       "uses", theirs, "numatune", mine)


def _at(vm: VmConfig, attribute: str) -> str:
    line = vm.line_of(attribute)
    return f" (line {line})" if line is not None else ""
