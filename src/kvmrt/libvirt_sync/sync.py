"""Keep the config and libvirt in step, both ways.

Config → libvirt: :func:`plan_to_libvirt` computes, per VM, the domain XML
kvmrt wants (the current persistent XML with kvmrt's parts set, see
:mod:`kvmrt.libvirt_sync.domxml`); :func:`apply_change` renames and defines
it and reads it back. libvirt → config: :func:`update_from_domain` takes
name, title, description, vCPU count, topology and PCI devices from the
domain XML into the VM. Both are pure plans plus a small applier, so that
``-q`` can show a diff and change nothing.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from kvmrt.config.file import format_config
from kvmrt.config.model import AUTO, VmConfig
from kvmrt.config.sets import PciSet
from kvmrt.errors import KvmrtError
from kvmrt.host.model import Topology
from kvmrt.libvirt_sync.domains import Domain, Domains
from kvmrt.libvirt_sync.domxml import DomainFacts, apply_config, owned_differences, read_facts
from kvmrt.placement import place


class NotDefined(KvmrtError):
    """A VM of the config has no libvirt domain with its UUID."""

    def __init__(self, vm: VmConfig) -> None:
        self.vm = vm
        # Reported next to the VM's name, so the message does not repeat it.
        super().__init__(
            f"no libvirt domain has UUID {vm.uuid}; define the domain first "
            "(virt-install, virt-manager) or fix the section header")


class NoSuchDomain(KvmrtError):
    def __init__(self, name: str) -> None:
        super().__init__(f"libvirt has no domain named {name!r} (by name or UUID)")


class RenameRefused(KvmrtError):
    def __init__(self, vm: VmConfig, domain: Domain, reason: str) -> None:
        super().__init__(f"cannot rename domain {domain.name!r} to {vm.name!r}: {reason}")


@dataclass(frozen=True)
class XmlChange:
    """What syncing one VM into libvirt would do."""

    vm: VmConfig
    domain: Domain
    wanted: str

    @property
    def rename(self) -> bool:
        return self.vm.name != self.domain.name

    @property
    def in_step(self) -> bool:
        return self.wanted == self.domain.xml

    def diff(self) -> str:
        return "".join(difflib.unified_diff(
            self.domain.xml.splitlines(keepends=True), self.wanted.splitlines(keepends=True),
            f"libvirt: {self.domain.name}", f"kvmrt: {self.vm.name}"))


def plan_to_libvirt(vm: VmConfig, topology: Topology, domains: Domains) -> XmlChange:
    domain = domains.by_uuid(vm.uuid)
    if domain is None:
        raise NotDefined(vm)
    return XmlChange(vm, domain, apply_config(domain.xml, place(vm, topology)))


def apply_change(change: XmlChange, domains: Domains) -> list[str]:
    """Rename (only while shut off) and define; return warnings about what
    libvirt did not keep of kvmrt's settings."""
    if change.rename:
        _check_rename(change, domains)
        domains.rename(change.vm.uuid, change.vm.name)
    after = domains.define(change.wanted, change.vm.name)
    return [f"{change.vm.name}: libvirt did not keep {lost}"
            for lost in owned_differences(change.wanted, after.xml)]


def _check_rename(change: XmlChange, domains: Domains) -> None:
    if not change.domain.shut_off:
        raise RenameRefused(change.vm, change.domain,
                            f"the domain is {change.domain.state}; shut it down first")
    clash = domains.by_name(change.vm.name)
    if clash is not None and clash.uuid != change.vm.uuid:
        raise RenameRefused(change.vm, change.domain,
                            f"another domain ({clash.uuid}) already has that name")


def update_from_domain(vm: VmConfig, facts: DomainFacts, topology: Topology | None) -> VmConfig:
    """``vm`` with what libvirt says of name, title, description, vCPUs,
    topology and PCI devices; unchanged attributes stay as they are (an
    ``auto`` that still resolves to libvirt's value stays ``auto``)."""
    changes: dict = {}
    for attr in ("name", "title", "description"):
        new = getattr(facts, attr) or ("" if attr != "name" else None)
        if new != getattr(vm, attr):
            changes[attr] = new
    if facts.nr_vcpus != _resolved_vcpus(vm, topology):
        changes["nr_vcpus"] = facts.nr_vcpus
    topo = facts.cpu_topology
    topo = AUTO if topo is None or topo == (1, facts.nr_vcpus, 1) else topo
    if topo != vm.cpu_topology:
        changes["cpu_topology"] = topo
    if PciSet(facts.pcidevs) != vm.pcidevs:
        changes["pcidevs"] = PciSet(facts.pcidevs)
    return vm.with_values(**changes) if changes else vm


def _resolved_vcpus(vm: VmConfig, topology: Topology | None) -> int | None:
    if vm.nr_vcpus is not AUTO:
        return vm.nr_vcpus
    if topology is None:
        return None
    try:
        return place(vm, topology).nr_vcpus
    except KvmrtError:
        return None


def new_vm_from_domain(domain: Domain, topology: Topology | None) -> VmConfig:
    """A VM for a domain the config does not have yet: defaults plus what
    libvirt says."""
    return update_from_domain(VmConfig(uuid=domain.uuid), read_facts(domain.xml), topology)


def config_diff(before: VmConfig, after: VmConfig, path: str | None) -> str:
    """Unified diff of one VM's config lines."""
    label = path or "config"
    return "".join(difflib.unified_diff(
        format_config([before]).splitlines(keepends=True),
        format_config([after]).splitlines(keepends=True),
        f"{label}: {before.label}", f"libvirt: {after.label}"))


@dataclass
class Outcome:
    """What happened to one VM: ``in step``, ``out of step`` (with -q),
    ``updated`` or ``failed``; ``diff`` shows the change."""

    vm: str
    status: str
    diff: str = ""
    messages: list[str] = field(default_factory=list)


def sync_to_libvirt(vms: list[VmConfig], topology: Topology, domains: Domains, *,
                    query: bool) -> list[Outcome]:
    """Write each VM into its domain's XML (or, with ``query``, only say
    which are out of step)."""
    outcomes = []
    for vm in vms:
        try:
            change = plan_to_libvirt(vm, topology, domains)
            if change.in_step:
                outcomes.append(Outcome(vm.label, "in step"))
            elif query:
                outcomes.append(Outcome(vm.label, "out of step", change.diff()))
            else:
                warnings = apply_change(change, domains)
                outcomes.append(Outcome(vm.label, "updated", change.diff(), warnings))
        except KvmrtError as exc:
            outcomes.append(Outcome(vm.label, "failed", messages=[str(exc)]))
    return outcomes
