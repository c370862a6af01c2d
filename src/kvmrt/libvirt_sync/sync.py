"""Keep the config and libvirt in step, both ways.

Config → libvirt: :func:`plan_to_libvirt` computes, per VM, the domain XML
kvmrt wants (the current persistent XML with kvmrt's parts set, see
:mod:`kvmrt.libvirt_sync.domxml`); :func:`apply_change` renames and defines
it and reads it back; :func:`tuning_removed` names each pin, numatune,
locked memory or hidden KVM it removes or changes. libvirt → config:
:func:`update_from_domain` takes name, title, description, pinning, vCPUs,
topology, numatune, locked memory, hidden KVM, PCI devices and kvmrt's
guest services channel from the domain XML into the VM; :func:`unexpressed` says what of the XML the
config cannot express. Both are pure plans plus a small applier, so that
``-q`` can show a diff and change nothing.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from enum import StrEnum

from kvmrt.config.file import format_config
from kvmrt.config.model import AUTO, VmConfig
from kvmrt.sets import CpuSpec, IdSet, PciSet, format_ids
from kvmrt.errors import KvmrtError
from kvmrt.host.model import Topology
from kvmrt.libvirt_sync.domains import Domain, Domains
from kvmrt.libvirt_sync.domxml import (DomainFacts, apply_config, owned_changes,
                                       owned_differences)
from kvmrt.placement import Placement, place


def not_defined(vm: VmConfig, path: str | None = None) -> str:
    """What to do about a VM whose domain libvirt does not have (reported next
    to the VM's name, so the text does not repeat it)."""
    from kvmrt.config import DEFAULT_PATH

    where = "" if path in (None, DEFAULT_PATH) else f" -f {path}"
    return (f"libvirt has no domain with UUID {vm.uuid} (deleted, or not defined yet); "
            f"define it, or remove its section [{vm.uuid}] or set disabled = true in it "
            f"(kvmrt-edit-config{where})")


class NotDefined(KvmrtError):
    """A VM of the config has no libvirt domain with its UUID."""

    def __init__(self, vm: VmConfig, path: str | None = None) -> None:
        self.vm = vm
        super().__init__(not_defined(vm, path))


class NoSuchDomain(KvmrtError):
    def __init__(self, name: str) -> None:
        super().__init__(f"libvirt has no domain named {name!r} (by name or UUID)")


class RenameRefused(KvmrtError):
    def __init__(self, vm: VmConfig, domain: Domain, reason: str) -> None:
        super().__init__(f"cannot rename domain {domain.name!r} to {vm.name!r}: {reason}")


class SecretsUnreadable(KvmrtError):
    """The domain's XML was read without its passwords: defining it would drop them."""

    def __init__(self, domain: Domain) -> None:
        super().__init__(
            f"libvirt does not let this connection read the passwords of domain "
            f"{domain.name!r} (VIR_DOMAIN_XML_SECURE); defining it would remove them, so "
            "nothing was changed: run as root on a read-write connection")


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
        """The unified diff, passwords hidden (it is printed)."""
        return "".join(difflib.unified_diff(
            _hide_secrets(self.domain.xml).splitlines(keepends=True),
            _hide_secrets(self.wanted).splitlines(keepends=True),
            f"libvirt: {self.domain.name}", f"kvmrt: {self.vm.name}"))


# What libvirt gives only with VIR_DOMAIN_XML_SECURE (libvirt 9): the
# passwd of VNC and SPICE <graphics>, and the <cookie> values of an HTTP(S)
# or FTP disk source (also in a <backingStore>).
_PASSWD = re.compile(r"""(\spasswd\s*=\s*)(['"])[^'"]*\2""")
_COOKIE = re.compile(r"(<cookie\b[^>]*>)[^<]*(</cookie\s*>)")


def _hide_secrets(xml: str) -> str:
    return _COOKIE.sub(r"\1(hidden)\2", _PASSWD.sub(r"\1\2(hidden)\2", xml))


def plan_to_libvirt(vm: VmConfig, topology: Topology, domains: Domains,
                    path: str | None = None) -> XmlChange:
    domain = domains.by_uuid(vm.uuid)
    if domain is None:
        raise NotDefined(vm, path)
    return XmlChange(vm, domain, apply_config(domain.xml, place(vm, topology)))


def apply_change(change: XmlChange, domains: Domains) -> list[str]:
    """Rename (only while shut off) and define; return warnings about what
    libvirt did not keep of kvmrt's settings."""
    if not change.domain.secure:
        raise SecretsUnreadable(change.domain)
    if change.rename:
        check_rename(change, domains)
        domains.rename(change.vm.uuid, change.vm.name)
    after = domains.define(change.wanted, change.vm.name)
    return [f"{change.vm.name}: libvirt did not keep {lost}"
            for lost in owned_differences(change.wanted, after.xml)]


def check_rename(change: XmlChange, domains: Domains) -> None:
    """Raise :class:`RenameRefused` unless the domain may take the VM's
    name: it is shut off and no other domain has that name."""
    if not change.domain.shut_off:
        raise RenameRefused(change.vm, change.domain,
                            f"the domain is {change.domain.state}; shut it down first")
    clash = domains.by_name(change.vm.name)
    if clash is not None and clash.uuid != change.vm.uuid:
        raise RenameRefused(change.vm, change.domain,
                            f"another domain ({clash.uuid}) already has that name")


def update_from_domain(vm: VmConfig, facts: DomainFacts, topology: Topology) -> VmConfig:
    """``vm`` with what libvirt says of name, title, description, pinning
    (cpuset), vCPUs, topology, numatune, locked memory (rt_memory), hidden
    KVM, PCI devices and kvmrt's guest services channel. An attribute whose value already gives libvirt's
    stays as it is; else ``auto`` where that gives it, else the explicit
    value. ``rt`` is never taken: it changes the host, not the domain."""
    changes: dict = {}
    for attr in ("name", "title", "description"):
        new = getattr(facts, attr) or ("" if attr != "name" else None)
        if new != getattr(vm, attr):
            changes[attr] = new
    if PciSet(facts.pcidevs) != vm.pcidevs:
        changes["pcidevs"] = PciSet(facts.pcidevs)
    if facts.guest_services != bool(vm.guest_services):
        changes["guest_services"] = facts.guest_services
    vm = vm.with_values(**changes) if changes else vm
    pinned = facts.pinned_cpus
    vm = _take(vm, topology, "cpuset", pinned, lambda p: p.usable_cpus,
               CpuSpec.parse(format_ids(pinned)))
    vm = _take(vm, topology, "nr_vcpus", facts.nr_vcpus, lambda p: p.nr_vcpus,
               AUTO, facts.nr_vcpus)
    vm = _take_topology(vm, facts)
    vm = _take(vm, topology, "numatune", facts.numatune, lambda p: p.numatune,
               AUTO, IdSet(facts.numatune or ()))
    vm = _take(vm, topology, "rt_memory", facts.locked, lambda p: p.rt_memory,
               AUTO, facts.locked)
    return _take(vm, topology, "hide_kvm", facts.kvm_hidden, lambda p: bool(p.vm.hide_kvm),
                 facts.kvm_hidden)


def _take(vm: VmConfig, topology: Topology, attr: str, want, resolve, *candidates) -> VmConfig:
    """``vm`` with ``attr`` at the first of its own value and ``candidates``
    whose placement on ``topology`` resolves (``resolve``) to ``want``; the
    last candidate (the explicit value) when none does."""
    current = getattr(vm, attr)
    for value in (current, *candidates):
        trial = vm if value is current else vm.with_values(**{attr: value})
        p = _placement(trial, topology)
        if p is not None and resolve(p) == want:
            return trial
    return vm if candidates[-1] == current else vm.with_values(**{attr: candidates[-1]})


def _take_topology(vm: VmConfig, facts: DomainFacts) -> VmConfig:
    topo = facts.cpu_topology
    topo = AUTO if topo is None or topo == (1, facts.nr_vcpus, 1) else topo
    return vm if topo == vm.cpu_topology else vm.with_values(cpu_topology=topo)


def _placement(vm: VmConfig, topology: Topology) -> Placement | None:
    """The placement, or None when the VM names CPUs the host lacks."""
    try:
        return place(vm, topology)
    except KvmrtError:
        return None


# Why the config cannot say what libvirt has, by the element kvmrt would change.
_CANNOT_EXPRESS = (
    ("<cputune>", "kvmrt pins vCPU i to the i-th usable CPU of the cpuset and the "
                  "emulator and iothreads to the other CPUs"),
    ("<vcpu cpuset>", "kvmrt pins each vCPU with <vcpupin> instead"),
    ("<numatune>", "numatune is a strict nodeset (mode='strict') or nothing"),
    ("<features><kvm><hidden>", "hide_kvm writes state='on' or nothing"),
    ("<cpu><topology>", "cpu_topology is sockets,cores,threads; kvmrt always writes one"),
)


def unexpressed(vm: VmConfig, xml: str, topology: Topology) -> list[str]:
    """What a sync of ``vm`` would still change in ``xml`` (just taken into
    ``vm`` from it): one line per element, with why the config cannot say it."""
    p = _placement(vm, topology)
    if p is None:
        return []
    lines = []
    for label, have, want in owned_changes(xml, apply_config(xml, p)):
        why = next((w for prefix, w in _CANNOT_EXPRESS if label.startswith(prefix)),
                   "the config cannot express it")
        lines.append(f"{label}: libvirt has {have or 'none'}, kvmrt-sync-config would "
                     f"{'write ' + want if want else 'remove it'} ({why})")
    return lines


# The elements of the XML that tune the domain or pass a device through (as
# against naming or sizing it): a sync names each one it removes.
_TUNING = ("<cputune>", "<vcpu cpuset>", "<numatune>", "<memoryBacking>", "<features>",
           "PCI <hostdev>")


def tuning_removed(change: "XmlChange", *, done: bool) -> list[str]:
    """One line per tuning element or PCI host device of the domain that
    the change removes, so that no pin, numatune, locked memory, hidden KVM
    or passed-through device goes without a word (changed values show in
    the diff)."""
    verb = "removed" if done else "would remove"
    return [f"{change.vm.label}: {verb} {label} ({have}): the config does not have it"
            for label, have, want in owned_changes(change.domain.xml, change.wanted)
            if want is None and have is not None and label.startswith(_TUNING)]


def config_diff(before: VmConfig, after: VmConfig, path: str | None) -> str:
    """Unified diff of one VM's config lines."""
    label = path or "config"
    return "".join(difflib.unified_diff(
        format_config([before]).splitlines(keepends=True),
        format_config([after]).splitlines(keepends=True),
        f"{label}: {before.label}", f"libvirt: {after.label}"))


class SyncStatus(StrEnum):
    """Where one VM's config and domain XML stand (the word printed)."""

    IN_STEP = "in step"
    OUT_OF_STEP = "out of step"     # with -q: nothing was changed
    UPDATED = "updated"
    FAILED = "failed"


@dataclass
class Outcome:
    """What happened to one VM; ``diff`` shows the change."""

    vm: str
    status: SyncStatus
    diff: str = ""
    messages: list[str] = field(default_factory=list)


def sync_to_libvirt(vms: list[VmConfig], topology: Topology, domains: Domains, *,
                    query: bool, path: str | None = None) -> list[Outcome]:
    """Write each VM into its domain's XML (or, with ``query``, only say
    which are out of step). ``path``: the config's, for what to do about a
    VM libvirt has no domain for."""
    outcomes = []
    for vm in vms:
        try:
            change = plan_to_libvirt(vm, topology, domains, path)
            if change.in_step:
                outcomes.append(Outcome(vm.label, SyncStatus.IN_STEP))
            elif query:
                outcomes.append(Outcome(vm.label, SyncStatus.OUT_OF_STEP, change.diff(),
                                        tuning_removed(change, done=False)))
            else:
                removed = tuning_removed(change, done=True)
                warnings = apply_change(change, domains)
                outcomes.append(Outcome(vm.label, SyncStatus.UPDATED, change.diff(),
                                        removed + warnings))
        except KvmrtError as exc:
            outcomes.append(Outcome(vm.label, SyncStatus.FAILED, messages=[str(exc)]))
    return outcomes
