"""Take libvirt's view into the config: ``kvmrt-import`` and
``kvmrt-sync-config -r``.

Both change VMs of a :class:`Config` in memory; the command saves it. A
change that would make the config invalid (say libvirt now has more vCPUs
than an rt VM's cpuset allows) is refused with the validator's errors, so
the config on disk never becomes invalid through kvmrt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kvmrt import diagnostics as diag
from kvmrt.config.file import Config, config_text, parse_config
from kvmrt.errors import KvmrtError
from kvmrt.host.model import Host
from kvmrt.libvirt_sync.domains import Domain, Domains
from kvmrt.libvirt_sync.domxml import read_facts
from kvmrt.libvirt_sync.sync import (NotDefined, Outcome, config_diff, new_vm_from_domain,
                                     update_from_domain)
from kvmrt.validate import validate


class WouldBreakConfig(KvmrtError):
    """Taking libvirt's values would introduce validation errors."""

    def __init__(self, errors: list[diag.Diagnostic]) -> None:
        self.errors = errors
        lines = "\n".join(e.format() for e in errors)
        super().__init__(f"libvirt's values would make the config invalid; nothing was "
                         f"written. Fix the domain (virsh edit) or the config first:\n{lines}")


@dataclass
class ImportResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def import_domains(config: Config, domains: list[Domain], host: Host, *,
                   update: bool) -> ImportResult:
    """Append domains the config lacks; with ``update``, refresh the others."""
    result = ImportResult()
    topology = host.topology
    for domain in domains:
        vm = config.find(domain.uuid)
        if vm is None:
            config.vms.append(new_vm_from_domain(domain, topology))
            result.added.append(domain.name)
        elif not update:
            result.skipped.append(domain.name)
        else:
            new = update_from_domain(vm, read_facts(domain.xml), topology)
            _replace(config, vm, new)
            (result.updated if new is not vm else result.unchanged).append(domain.name)
    return result


def check_still_valid(before: Config, after: Config, host: Host) -> None:
    """Raise :class:`WouldBreakConfig` if ``after`` has errors ``before`` had not."""
    old = {_key(d) for d in validate(before, host, include_disabled=True) if d.is_error}
    # Validate the text that would be written, so line numbers are the new file's.
    reparsed = parse_config(config_text(after), after.path)
    new = [d for d in validate(reparsed, host, include_disabled=True)
           if d.is_error and _key(d) not in old]
    if new:
        raise WouldBreakConfig(new)


def _key(d: diag.Diagnostic) -> tuple:
    return (d.code, d.vms, d.attribute, d.message)


def _replace(config: Config, old, new) -> None:
    config.vms[config.vms.index(old)] = new


def sync_from_libvirt(config: Config, vms: list, host: Host, domains: Domains, *,
                      query: bool) -> list[Outcome]:
    """Take each VM's name, title, description, vCPUs, topology and PCI
    devices from libvirt into ``config`` (in memory; unless ``query``)."""
    outcomes = []
    for vm in vms:
        domain = domains.by_uuid(vm.uuid)
        if domain is None:
            outcomes.append(Outcome(vm.label, "failed", messages=[str(NotDefined(vm))]))
            continue
        new = update_from_domain(vm, read_facts(domain.xml), host.topology)
        if new is vm:
            outcomes.append(Outcome(vm.label, "in step"))
            continue
        diff = config_diff(vm, new, config.path)
        outcomes.append(Outcome(vm.label, "out of step" if query else "updated", diff))
        if not query:
            _replace(config, vm, new)
    return outcomes
