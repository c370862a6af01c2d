"""Take libvirt's view into the config: ``kvmrt-import`` and
``kvmrt-sync-config -r``.

Both change VMs of a :class:`Config` in memory; the command saves it. Each
domain is taken on its own: one whose values would make the config invalid
(a PCI device this host lacks, more vCPUs than an rt VM's cpuset allows) or
whose XML kvmrt cannot read is left out with one line naming the VM, the
attribute, the value and what to do, and the others are taken. So the
config on disk never becomes invalid through kvmrt, and one bad domain
does not block the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kvmrt import diagnostics as diag
from kvmrt.config.file import Config
from kvmrt.config.model import VmConfig, vm_to_entries
from kvmrt.errors import KvmrtError
from kvmrt.host.model import Host
from kvmrt.libvirt_sync.domains import Domain, Domains
from kvmrt.libvirt_sync.domxml import read_facts
from kvmrt.libvirt_sync.sync import (NotDefined, Outcome, SyncStatus, config_diff, unexpressed,
                                     update_from_domain)
from kvmrt.validate import validate


class NotTaken(KvmrtError):
    """libvirt's values for one VM cannot go into the config."""

    def __init__(self, problem: str, hint: str) -> None:
        super().__init__(f"{problem}; {hint}")


@dataclass
class ImportResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)    # already in the config
    refused: list[str] = field(default_factory=list)    # "NAME: not imported: why; what to do"
    notes: list[str] = field(default_factory=list)      # what the config cannot express


def import_domains(config: Config, domains: list[Domain], host: Host, *,
                   update: bool) -> ImportResult:
    """Append domains the config lacks; with ``update``, refresh the others.
    A domain that cannot be taken is refused (``result.refused``) and the
    config keeps what it had for it."""
    result = ImportResult()
    baseline = _error_keys(config, host)
    for domain in domains:
        vm = config.find(domain.uuid)
        if vm is not None and not update:
            result.skipped.append(domain.name)
            continue
        try:
            new = take_domain(config, vm or VmConfig(uuid=domain.uuid), domain, host,
                              baseline)
        except KvmrtError as exc:
            word = "imported" if vm is None else "updated"
            result.refused.append(f"{domain.name}: not {word}: {exc}")
            continue
        if vm is None:
            config.vms.append(new)
        elif new is not vm:
            _replace(config, vm, new)
        (result.added if vm is None else result.updated if new is not vm
         else result.unchanged).append(domain.name)
        result.notes += [f"{domain.name}: {n}" for n in unexpressed(new, domain.xml,
                                                                     host.topology)]
    return result


def take_domain(config: Config, vm: VmConfig, domain: Domain, host: Host,
                baseline: set[tuple]) -> VmConfig:
    """``vm`` updated from ``domain``; :class:`NotTaken` when that would add
    validation errors to ``config`` (``baseline``: the errors it has)."""
    hint = (f"fix the domain (virsh edit {domain.name}) or the config "
            "(kvmrt-edit-config), then run the command again")
    try:
        new = update_from_domain(vm, read_facts(domain.xml), host.topology)
    except KvmrtError as exc:
        raise NotTaken(f"cannot read its domain XML: {exc}", hint) from exc
    if new is vm:
        return vm
    clash = next((v for v in config.vms if v is not vm and v.uuid.lower() != vm.uuid.lower()
                  and v.name == new.name), None)
    if clash is not None:
        raise NotTaken(f"name = {new.name}: the config's VM [{clash.uuid}] has that name",
                       hint)
    trial = Config(config.path, [new if v is vm else v for v in config.vms], config.problems)
    if vm not in config.vms:
        trial.vms.append(new)
    errors = [d for d in validate(trial, host, include_disabled=True)
              if d.is_error and _key(d) not in baseline]
    if errors:
        raise NotTaken("; ".join(_problem(d, new) for d in errors), hint)
    return new


def _problem(d: diag.Diagnostic, vm: VmConfig) -> str:
    """``attribute = value: message``, the value as the file would spell it."""
    if d.attribute is None:
        return d.message
    value = dict(vm_to_entries(vm)).get(d.attribute, getattr(vm, d.attribute))
    return f"{d.attribute} = {value}: {d.message}"


def _error_keys(config: Config, host: Host) -> set[tuple]:
    return {_key(d) for d in validate(config, host, include_disabled=True) if d.is_error}


def _key(d: diag.Diagnostic) -> tuple:
    return (d.code, d.vms, d.attribute, d.message)


def _replace(config: Config, old, new) -> None:
    config.vms[config.vms.index(old)] = new


def sync_from_libvirt(config: Config, vms: list, host: Host, domains: Domains, *,
                      query: bool) -> list[Outcome]:
    """Take each VM's name, title, description, tuning, vCPUs, topology and
    PCI devices from libvirt into ``config`` (in memory; unless ``query``).
    A VM whose values cannot be taken fails alone; the others are taken."""
    outcomes = []
    baseline = _error_keys(config, host)
    for vm in vms:
        domain = domains.by_uuid(vm.uuid)
        if domain is None:
            outcomes.append(Outcome(vm.label, SyncStatus.FAILED, messages=[str(NotDefined(vm, config.path))]))
            continue
        try:
            new = take_domain(config, vm, domain, host, baseline)
        except KvmrtError as exc:
            outcomes.append(Outcome(vm.label, SyncStatus.FAILED, messages=[str(exc)]))
            continue
        notes = [f"{new.label}: {n}" for n in unexpressed(new, domain.xml, host.topology)]
        if new is vm:
            outcomes.append(Outcome(vm.label, SyncStatus.IN_STEP, messages=notes))
            continue
        diff = config_diff(vm, new, config.path)
        status = SyncStatus.OUT_OF_STEP if query else SyncStatus.UPDATED
        outcomes.append(Outcome(vm.label, status, diff, notes))
        if not query:
            _replace(config, vm, new)
    return outcomes
