"""Applying an edit of the whole config: the rules both front ends share.

``kvmrt-edit-config`` (an editor on a copy) and the dashboard's
configuration dialog (forms) both end in the same steps, decided here:

- :func:`check_edit`: what blocks the save (problems of the file in every
  section; host and cross-VM rules for the enabled VMs; a rename libvirt
  would refuse) and what is only a note (the ``--all`` findings of a
  disabled VM the edit changed: a disabled VM never blocks a save);
- :func:`save_edit`: write the new text atomically under the config's lock,
  unless the file changed on disk since it was read;
- :func:`sync_edit`: write into libvirt only the enabled VMs whose sections
  the edit changed; the VMs it left alone keep what libvirt has (a ``virsh
  edit`` made meanwhile is reported, never reverted).

No printing here: the results say what happened, the front ends show it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from kvmrt import diagnostics as diag
from kvmrt.config import inifile
from kvmrt.config.file import DEFAULT_PATH, Config
from kvmrt.config.model import VmConfig
from kvmrt.errors import KvmrtError
from kvmrt.host.model import Host
from kvmrt.libvirt_sync.domains import Domains
from kvmrt.libvirt_sync.sync import (Outcome, RenameRefused, SyncStatus, XmlChange,
                                     check_rename, not_defined, sync_to_libvirt)
from kvmrt.validate import validate


class ChangedOnDisk(KvmrtError):
    """The config file is no longer the text the edit started from."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path} changed on disk while you were editing; not overwritten")


@dataclass
class EditCheck:
    """``found`` blocks the save when it holds an error; ``notes`` never do."""

    found: list[diag.Diagnostic] = field(default_factory=list)
    notes: list[diag.Diagnostic] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.found)


def changed_vms(before: Config, after: Config) -> list[VmConfig]:
    """The VMs of ``after`` whose section is new or holds other values than
    before (by UUID). Moving a section or respelling a value (``yes`` for
    ``true``, another order of a set) is no change."""
    old = {vm.uuid.lower(): vm for vm in before.vms}
    return [vm for vm in after.vms
            if vm.uuid.lower() not in old or old[vm.uuid.lower()].values != vm.values]


def removed_vms(before: Config, after: Config) -> list[VmConfig]:
    """The enabled VMs of ``before`` whose section the edit removed."""
    kept = {vm.uuid.lower() for vm in after.vms}
    return [vm for vm in before.active() if vm.uuid.lower() not in kept]


def check_edit(before: Config, after: Config, host: Host,
               domains: Domains | None) -> EditCheck:
    """What the edited config's save depends on (see the module doc);
    ``domains`` None (libvirt unreachable) skips the rename check."""
    check = EditCheck(found=validate(after, host))
    changed = changed_vms(before, after)
    disabled = {vm.label for vm in changed if vm.disabled}
    check.notes = [d for d in validate(after, host, include_disabled=True)
                   if d not in check.found and disabled & set(d.vms)]
    if not check.has_errors and domains is not None:
        check.found += refused_renames([vm for vm in changed if not vm.disabled], domains,
                                       after.path)
    return check


def refused_renames(vms: list[VmConfig], domains: Domains,
                    path: str | None) -> list[diag.Diagnostic]:
    """A rename libvirt would refuse (the domain runs, or the name is taken)
    is an error before saving, not a failed sync after it."""
    out = []
    for vm in vms:
        domain = domains.by_uuid(vm.uuid)
        if domain is None or domain.name == vm.name:
            continue
        try:
            check_rename(XmlChange(vm, domain, domain.xml), domains)
        except RenameRefused as exc:
            out.append(diag.error("rename-refused", f"{exc}; or keep the name", vms=(vm.label,),
                                  attribute="name", line=vm.line_of("name"), file=path))
    return out


def save_edit(path: str, original: str, text: str) -> None:
    """Write ``text`` as the config under its lock, atomically, unless the
    file no longer reads ``original`` (:class:`ChangedOnDisk`)."""
    with inifile.locked(path):
        now = inifile.read_config(path) if os.path.lexists(path) else ""
        if now != original:
            raise ChangedOnDisk(path)
        inifile.write_atomic(path, text)


@dataclass
class EditSync:
    """What :func:`sync_edit` did and found."""

    outcomes: list[Outcome] = field(default_factory=list)    # the changed VMs, synced
    unsynced: list[Outcome] = field(default_factory=list)    # the others, compared (-q)
    removed: list[str] = field(default_factory=list)         # "VM: removed from the config…"
    undefined: list[str] = field(default_factory=list)       # warnings: no domain


def sync_edit(before: Config, after: Config, host: Host, domains: Domains) -> EditSync:
    """Sync the changed enabled VMs; compare the others (see the module doc)."""
    done = EditSync()
    changed = [vm for vm in changed_vms(before, after) if not vm.disabled]
    defined = [vm for vm in after.active() if domains.by_uuid(vm.uuid) is not None]
    for vm in removed_vms(before, after):
        kept = "" if domains.by_uuid(vm.uuid) is None else "; its libvirt domain is left as it is"
        done.removed.append(f"{vm.label}: removed from the config{kept}")
    others = [vm for vm in defined if vm not in changed]
    done.unsynced = sync_to_libvirt(others, host.topology, domains, query=True)
    done.undefined = [f"{vm.label}: {not_defined(vm, after.path)}" for vm in after.active()
                      if vm not in defined and vm not in changed]
    for vm in changed:
        if vm in defined:
            done.outcomes += sync_to_libvirt([vm], host.topology, domains, query=False)
        else:
            done.outcomes.append(Outcome(vm.label, SyncStatus.FAILED,
                                         messages=[not_defined(vm, after.path)]))
    return done


def unsynced_line(o: Outcome) -> str | None:
    """A VM the edit did not change that is out of step, as libvirt has it."""
    if o.status is SyncStatus.OUT_OF_STEP:
        return (f"{o.vm}: not changed by this edit, out of step with libvirt and left "
                f"as it is: 'kvmrt-sync-config -r {o.vm}' takes libvirt's side, "
                f"'kvmrt-sync-config {o.vm}' the config's")
    if o.status is SyncStatus.FAILED:
        return f"warning: {o.vm}: cannot compare with libvirt: {'; '.join(o.messages)}"
    return None
