"""kvmrt-edit-config: edit the config safely, validate, save, sync libvirt.

Only the VMs whose sections the edit changed are written into libvirt; a
VM the edit left alone keeps whatever libvirt has (a ``virsh edit`` made
meanwhile is reported, not reverted). The edited copy is removed unless it
holds edits the user must recover.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
from typing import TYPE_CHECKING

import click

from kvmrt import diagnostics as diag
from kvmrt.commands import common
from kvmrt.commands.sync_config import report
from kvmrt.errors import KvmrtError

if TYPE_CHECKING:
    from kvmrt.config.file import Config
    from kvmrt.host.model import Host
    from kvmrt.libvirt_sync.domains import Domains


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
    from kvmrt.config import inifile
    from kvmrt.config.file import parse_config

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
        from kvmrt.libvirt_sync.connection import connect
        from kvmrt.libvirt_sync.domains import Domains

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
    from kvmrt.config import inifile

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
    """Run the editor on the copy. Ctrl-C and Ctrl-\\ belong to the editor
    while it runs (vi uses Ctrl-C to cancel a command), so this process
    ignores them meanwhile, as git does around its editor."""
    try:
        child = subprocess.Popen([*editor, copy])
    except OSError as exc:
        common.fail(f"cannot run editor {shlex.join(editor)!r}: {exc.strerror}; nothing "
                    f"saved; {_copy_fate(copy, original)}")
    keys = (signal.SIGINT, signal.SIGQUIT)
    before = [signal.signal(key, signal.SIG_IGN) for key in keys]
    try:
        status = child.wait()
    finally:
        for key, handler in zip(keys, before):
            signal.signal(key, handler)
    if status != 0:
        common.fail(f"editor {shlex.join(editor)!r} exited with status {status}; "
                    f"nothing saved; {_copy_fate(copy, original)}")


def _edit_until_valid(editor: list[str], copy: str, original: str, before: Config,
                      host: Host, libvirt: _Libvirt) -> tuple[Config | None, str]:
    """Run the editor until the copy can be saved; (None, original) if unchanged."""
    from kvmrt.config import inifile
    from kvmrt.config.file import parse_config

    target = before.path
    while True:
        _run_editor(editor, copy, original)
        try:
            text = inifile.read_config(copy)
        except KvmrtError as exc:
            common.fail(f"{exc}; nothing saved, {target} is unchanged; "
                        f"{_copy_fate(copy, original)}")
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
    """(findings, notes) of the edited config (:func:`kvmrt.edit.check_edit`)."""
    from kvmrt import edit

    check = edit.check_edit(before, after, host, libvirt.domains())
    return check.found, check.notes


def _as_note(d: diag.Diagnostic) -> str:
    return (d.format().replace(f": {d.severity.value}: ", ": note: ", 1)
            + " (a disabled VM does not block the save; fix it before enabling the VM)")


# -- saving ----------------------------------------------------------------

def _save(target: str, original: str, text: str, copy: str) -> None:
    """Write the edited text, under the lock, unless the file changed meanwhile."""
    from kvmrt import edit

    try:
        edit.save_edit(target, original, text)
    except edit.ChangedOnDisk as exc:
        common.fail(f"{exc}. Your edited copy is kept at {copy}")
    except KvmrtError as exc:
        common.fail(f"not saved: {exc}; {target} is unchanged and your edited copy is "
                    f"kept at {copy}")
    os.unlink(copy)


# -- syncing ---------------------------------------------------------------

def _sync(before: Config, after: Config, host: Host, libvirt: _Libvirt) -> None:
    """Sync the changed enabled VMs; report the others that are out of step."""
    from kvmrt import edit

    domains = libvirt.domains()
    if domains is None:
        common.fail(f"saved, but libvirt was not synced: {libvirt.why}; "
                    "run kvmrt-sync-config later")
    done = edit.sync_edit(before, after, host, domains)
    for line in done.removed:
        click.echo(line)
    for o in done.unsynced:
        line = edit.unsynced_line(o)
        if line is not None:
            click.echo(line, err=line.startswith("warning:"))
    for line in done.undefined:
        click.echo(f"warning: {line}", err=True)
    report(done.outcomes, query=False)
