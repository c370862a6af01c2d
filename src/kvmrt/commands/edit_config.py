"""kvmrt-edit-config: edit the config safely, validate, save, sync libvirt.

Only the VMs whose sections the edit changed are written into libvirt; a
VM the edit left alone keeps whatever libvirt has (a ``virsh edit`` made
meanwhile is reported, not reverted). The edited copy is removed unless it
holds edits the user must recover.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile

import click

from kvmrt import diagnostics as diag
from kvmrt.commands import common
from kvmrt.commands.sync_config import report
from kvmrt.config import inifile
from kvmrt.config.file import Config, parse_config
from kvmrt.config.model import VmConfig
from kvmrt.errors import KvmrtError
from kvmrt.host.model import Host
from kvmrt.libvirt_sync.connection import connect
from kvmrt.libvirt_sync.domains import Domains
from kvmrt.libvirt_sync.sync import (Outcome, RenameRefused, XmlChange, _check_rename,
                                     sync_to_libvirt)
from kvmrt.validate import validate


@common.command
@common.file_option
@common.connect_option
@common.wait_option
def main(path: str | None, uri: str | None) -> None:
    """Open the config in $VISUAL or $EDITOR (default vi) on a copy; on save
    validate it; on errors show them and offer to edit again or quit
    without saving; when valid, write the config atomically and sync into
    libvirt the VMs whose sections the edit changed. The other VMs are left
    as libvirt has them; those out of step are named with the commands that
    bring them in step. Disabled VMs never block a save (problems of a
    disabled VM the edit changed are shown as notes). Renaming a VM whose
    domain is not shut off is refused before saving. If the file changed
    on disk while the editor was open, nothing is overwritten and the
    edited copy is kept. Quitting without changes changes nothing.
    """
    common.require_root()
    target = path or common.DEFAULT_PATH
    editor = _editor_command()
    exists = os.path.lexists(target)
    if not exists:
        click.echo(f"{target} does not exist: it is created when you save the new config",
                   err=True)
    original = inifile.read_config(target) if exists else ""
    host = common.host()
    before = parse_config(original, target)
    copy = _make_copy(original)
    libvirt = _Libvirt(uri)
    after, text = _edit_until_valid(editor, copy, original, before, host, libvirt)
    if after is None:
        os.unlink(copy)
        click.echo("no changes" if exists else f"{target} does not exist and was not "
                   "created (nothing saved)")
        return
    _save(target, original, text, copy)
    click.echo(f"{target}: saved")
    _sync(before, after, host, libvirt)


class _Libvirt:
    """libvirt's domains, connected when first needed (not while the editor
    is open); None, with the reason in ``why``, when unreachable."""

    def __init__(self, uri: str | None) -> None:
        self.uri = uri
        self.why: str | None = None
        self._domains: Domains | None = None

    def domains(self) -> Domains | None:
        if self._domains is None and self.why is None:
            try:
                self._domains = Domains(connect(self.uri))
            except KvmrtError as exc:
                self.why = str(exc)
        return self._domains


# -- editing ---------------------------------------------------------------

def _editor_command() -> list[str]:
    """$VISUAL, else $EDITOR, else vi, split as a shell splits words."""
    var = next((v for v in ("VISUAL", "EDITOR") if os.environ.get(v)), None)
    editor = os.environ[var] if var else "vi"
    try:
        words = shlex.split(editor)
    except ValueError as exc:
        common.fail(f"cannot read the editor command ${var}={editor!r}: {exc} "
                    "(quote as in a shell); nothing changed")
    if not words:
        common.fail(f"the editor command ${var}={editor!r} is blank; nothing changed")
    return words


def _make_copy(text: str) -> str:
    """A private copy of the config in $TMPDIR, complete or not at all."""
    where = tempfile.gettempdir()
    try:
        fd, copy = tempfile.mkstemp(prefix="kvmrt-edit-", suffix=".cfg")
    except OSError as exc:
        common.fail(f"cannot create the copy to edit in {where}: {exc.strerror}; "
                    "nothing changed (set TMPDIR to a directory with room)")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        os.unlink(copy)
        common.fail(f"cannot write the copy to edit in {where}: {exc.strerror}; "
                    "nothing changed (set TMPDIR to a directory with room)")
    return copy


def _copy_fate(copy: str, original: str) -> str:
    """Keep the copy only when it holds edits; say which."""
    if not os.path.lexists(copy):
        return f"the copy {copy} is gone"
    try:
        if inifile.read_config(copy) != original:
            return f"your edited copy is kept at {copy}"
        os.unlink(copy)
    except (KvmrtError, OSError):
        return f"your copy is kept at {copy}"
    return "the copy is removed"


def _run_editor(editor: list[str], copy: str, original: str) -> None:
    try:
        done = subprocess.run([*editor, copy])
    except OSError as exc:
        common.fail(f"cannot run editor {shlex.join(editor)!r}: {exc.strerror}; nothing "
                    f"saved; {_copy_fate(copy, original)}")
    if done.returncode != 0:
        common.fail(f"editor {shlex.join(editor)!r} exited with status {done.returncode}; "
                    f"nothing saved; {_copy_fate(copy, original)}")


def _edit_until_valid(editor: list[str], copy: str, original: str, before: Config,
                      host: Host, libvirt: _Libvirt) -> tuple[Config | None, str]:
    """Run the editor until the copy can be saved; (None, original) if unchanged."""
    target = before.path
    while True:
        _run_editor(editor, copy, original)
        text = inifile.read_config(copy)
        if text == original:
            return None, original
        after = parse_config(text, target)
        found, notes = _problems(before, after, host, libvirt)
        for d in sorted(found + notes, key=diag.sort_key):
            line = _as_note(d) if d in notes else d.format()
            click.echo(line.replace(f"{target}:", f"{copy}:", 1), err=True)
        if not any(d.is_error for d in found):
            return after, text
        if not _again():
            common.fail(f"quit without saving; {target} is unchanged and "
                        f"{_copy_fate(copy, original)}")


def _again() -> bool:
    try:
        answer = click.prompt("Errors found. Edit again (e) or quit without saving (q)?",
                              type=click.Choice(["e", "q"]), default="e", err=True)
    except click.Abort:
        return False
    return answer == "e"


def _problems(before: Config, after: Config, host: Host,
              libvirt: _Libvirt) -> tuple[list[diag.Diagnostic], list[diag.Diagnostic]]:
    """(findings, notes) of the edited config.

    Findings: problems of the file in every section, the host and cross-VM
    rules for enabled VMs (SPEC 4 without --all), and renames libvirt would
    refuse; their errors block the save. Notes: what ``--all`` adds for the
    disabled VMs the edit changed; a disabled VM never blocks a save.
    """
    found = validate(after, host)
    changed = _changed(before, after)
    disabled = {vm.label for vm in changed if vm.disabled}
    notes = [d for d in validate(after, host, include_disabled=True)
             if d not in found and disabled & set(d.vms)]
    if not any(d.is_error for d in found):
        found += _refused_renames([vm for vm in changed if not vm.disabled], libvirt,
                                  after.path)
    return found, notes


def _as_note(d: diag.Diagnostic) -> str:
    return (d.format().replace(f": {d.severity.value}: ", ": note: ", 1)
            + " (a disabled VM does not block the save; fix it before enabling the VM)")


def _refused_renames(vms: list[VmConfig], libvirt: _Libvirt,
                     path: str | None) -> list[diag.Diagnostic]:
    """A rename libvirt would refuse (the domain runs, or the name is taken)
    is an error before saving, not a failed sync after it."""
    domains = libvirt.domains()
    out = []
    for vm in vms if domains is not None else []:
        domain = domains.by_uuid(vm.uuid)
        if domain is None or domain.name == vm.name:
            continue
        try:
            _check_rename(XmlChange(vm, domain, domain.xml), domains)
        except RenameRefused as exc:
            out.append(diag.error("rename-refused", f"{exc}; or keep the name", vms=(vm.label,),
                                  attribute="name", line=vm.line_of("name"), file=path))
    return out


def _changed(before: Config, after: Config) -> list[VmConfig]:
    """The VMs of ``after`` whose section is new or holds other values than
    before (by UUID). Moving a section or respelling a value (``yes`` for
    ``true``, another order of a set) is no change."""
    old = {vm.uuid.lower(): vm for vm in before.vms}
    return [vm for vm in after.vms
            if vm.uuid.lower() not in old or old[vm.uuid.lower()].values != vm.values]


# -- saving ----------------------------------------------------------------

def _save(target: str, original: str, text: str, copy: str) -> None:
    """Write the edited text, under the lock, unless the file changed meanwhile."""
    try:
        with inifile.locked(target):
            now = inifile.read_config(target) if os.path.lexists(target) else ""
            if now != original:
                common.fail(f"{target} changed on disk while you were editing; not "
                            f"overwritten. Your edited copy is kept at {copy}")
            inifile.write_atomic(target, text)
    except KvmrtError as exc:
        common.fail(f"not saved: {exc}; {target} is unchanged and your edited copy is "
                    f"kept at {copy}")
    os.unlink(copy)


# -- syncing ---------------------------------------------------------------

def _sync(before: Config, after: Config, host: Host, libvirt: _Libvirt) -> None:
    """Sync the changed enabled VMs; report the others that are out of step."""
    domains = libvirt.domains()
    if domains is None:
        common.fail(f"saved, but libvirt was not synced: {libvirt.why}; "
                    "run kvmrt-sync-config later")
    changed = [vm for vm in _changed(before, after) if not vm.disabled]
    defined = [vm for vm in after.active() if domains.by_uuid(vm.uuid) is not None]
    others = [vm for vm in defined if vm not in changed]
    for vm in _removed(before, after):
        kept = "" if domains.by_uuid(vm.uuid) is None else "; its libvirt domain is left as it is"
        click.echo(f"{vm.label}: removed from the config{kept}")
    for o in sync_to_libvirt(others, host.topology, domains, query=True):
        _say_unsynced(o)
    for vm in after.active():
        if vm not in defined and vm not in changed:
            click.echo(f"warning: {vm.label}: {_not_defined(vm, after.path)}", err=True)
    outcomes = []
    for vm in changed:
        if vm in defined:
            outcomes += sync_to_libvirt([vm], host.topology, domains, query=False)
        else:
            outcomes.append(Outcome(vm.label, "failed", messages=[_not_defined(vm, after.path)]))
    report(outcomes, query=False)


def _removed(before: Config, after: Config) -> list[VmConfig]:
    kept = {vm.uuid.lower() for vm in after.vms}
    return [vm for vm in before.active() if vm.uuid.lower() not in kept]


def _say_unsynced(o: Outcome) -> None:
    """A VM the edit did not change, as libvirt has it."""
    if o.status == "out of step":
        click.echo(f"{o.vm}: not changed by this edit, out of step with libvirt and left "
                   f"as it is: 'kvmrt-sync-config -r {o.vm}' takes libvirt's side, "
                   f"'kvmrt-sync-config {o.vm}' the config's")
    elif o.status == "failed":
        click.echo(f"warning: {o.vm}: cannot compare with libvirt: {'; '.join(o.messages)}",
                   err=True)


def _not_defined(vm: VmConfig, path: str | None) -> str:
    return (f"libvirt has no domain with UUID {vm.uuid} (deleted, or not defined yet); "
            f"define it, or remove its section [{vm.uuid}] or set disabled = true in it "
            f"(kvmrt-edit-config{'' if path == common.DEFAULT_PATH else f' -f {path}'})")

