"""kvmrt-edit-config: edit the config safely, validate, save, sync libvirt."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile

import click

from kvmrt.commands import common
from kvmrt.commands.sync_config import report
from kvmrt.config import inifile
from kvmrt.config.file import Config, parse_config
from kvmrt.host.model import Host
from kvmrt.libvirt_sync.connection import connect
from kvmrt.libvirt_sync.domains import Domains
from kvmrt.libvirt_sync.sync import sync_to_libvirt
from kvmrt.validate import validate


@common.command
@common.file_option
@common.connect_option
@common.wait_option
def main(path: str | None, uri: str | None) -> None:
    """Open the config in $VISUAL or $EDITOR (default vi) on a copy; on save
    validate it; on errors show them and offer to edit again or quit
    without saving; when valid, write the config atomically and sync
    libvirt. If the file changed on disk while the editor was open, nothing
    is overwritten and the edited copy is kept. Quitting without changes
    changes nothing.
    """
    common.require_root()
    target = path or common.DEFAULT_PATH
    original = inifile.read_config(target) if os.path.lexists(target) else ""
    host = common.host()
    copy = _make_copy(original)
    config, text = _edit_until_valid(copy, original, target, host)
    if config is None:
        os.unlink(copy)
        click.echo("no changes")
        return
    with inifile.locked(target):
        now = inifile.read_config(target) if os.path.lexists(target) else ""
        if now != original:
            common.fail(f"{target} changed on disk while you were editing; not overwritten. "
                        f"Your edited copy is kept at {copy}")
        inifile.write_atomic(target, text)
    os.unlink(copy)
    click.echo(f"{target}: saved")
    _sync(config, host, uri)


def _edit_until_valid(copy: str, original: str, target: str,
                      host: Host) -> tuple[Config | None, str]:
    """Run the editor until the copy is valid; (None, original) if unchanged."""
    while True:
        _run_editor(copy)
        text = inifile.read_config(copy)
        if text == original:
            return None, original
        config = parse_config(text, target)
        # Disabled VMs too: a config with errors is never saved (SPEC 4).
        found = validate(config, host, include_disabled=True)
        for d in found:
            click.echo(d.format().replace(target, copy, 1), err=True)
        if not any(d.is_error for d in found):
            return config, text
        if not _again():
            common.fail(f"quit without saving; {target} is unchanged and your edited "
                        f"copy is kept at {copy}")


def _again() -> bool:
    try:
        answer = click.prompt("Errors found. Edit again (e) or quit without saving (q)?",
                              type=click.Choice(["e", "q"]), default="e", err=True)
    except click.Abort:
        return False
    return answer == "e"


def _make_copy(text: str) -> str:
    fd, copy = tempfile.mkstemp(prefix="kvmrt-edit-", suffix=".cfg")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return copy


def _run_editor(copy: str) -> None:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        done = subprocess.run([*shlex.split(editor), copy])
    except OSError as exc:
        common.fail(f"cannot run editor {editor!r}: {exc.strerror}; "
                    f"your copy is kept at {copy}")
    if done.returncode != 0:
        common.fail(f"editor {editor!r} exited with status {done.returncode}; nothing saved; "
                    f"your copy is kept at {copy}")


def _sync(config: Config, host: Host, uri: str | None) -> None:
    try:
        domains = Domains(connect(uri))
    except common.KvmrtError as exc:
        common.fail(f"saved, but libvirt was not synced: {exc}; run kvmrt-sync-config later")
    report(sync_to_libvirt(config.active(), host.topology, domains, query=False), query=False)
    sys.exit(0)
