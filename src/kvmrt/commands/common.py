"""What every kvmrt command shares: options, loading, errors, output.

Only the command layer prints. Library code raises :class:`KvmrtError`
subclasses; :func:`run` turns them into one line on stderr and exit 1.
``--debug`` shows the traceback instead.

A command module imports at its top only what ``--help`` and argument
errors need (click, the config, the lock); libvirt, lxml, the host readers
and the tuning code are imported where a command body uses them, so that
``--help`` starts as fast as Python itself (tests/test_lazy_imports.py).
"""

from __future__ import annotations

import functools
import math
import os
import shlex
import sys
from typing import TYPE_CHECKING, Any, Callable

import click

from kvmrt import lockfile
from kvmrt.config import DEFAULT_PATH
from kvmrt.errors import KvmrtError

if TYPE_CHECKING:
    from kvmrt.config.file import Config
    from kvmrt.host.model import Host
    from kvmrt.libvirt_sync.domains import Domain

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def command(fn: Callable) -> click.Command:
    """A kvmrt command: help options, --debug, and one-line errors."""

    @click.option("--debug", is_flag=True, hidden=True, help="Show tracebacks.")
    @functools.wraps(fn)
    def wrapper(*args: Any, debug: bool, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KvmrtError as exc:
            if debug:
                raise
            print_diagnostics(getattr(exc, "diagnostics", []))   # the lines that say why
            fail(str(exc))

    # One version for every tool, from the installed package's metadata.
    versioned = click.version_option(package_name="kvmrt", message="%(prog)s %(version)s")
    return click.command(context_settings=CONTEXT)(versioned(wrapper))


def fail(message: str, code: int = 1) -> None:
    click.echo(f"{click.get_current_context().command_path}: {message}", err=True)
    sys.exit(code)


file_option = click.option(
    "-f", "--file", "path", default=None, metavar="FILE", type=click.Path(),
    help=f"Config file (default {DEFAULT_PATH}).")
all_option = click.option(
    "--all", "include_disabled", is_flag=True, help="Include disabled VMs.")
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON instead of text (its keys: see the man page).")
connect_option = click.option(
    "-c", "--connect", "uri", default=None, metavar="URI",
    help="libvirt URI (default: $LIBVIRT_DEFAULT_URI, else qemu:///system).")


def complete_vms(ctx: click.Context, _param: click.Parameter,
                 incomplete: str) -> list[str]:
    """Shell completion: the VM names of the config (-f, else the default)."""
    from kvmrt.config.file import load_config

    try:
        config = load_config(ctx.params.get("path") or DEFAULT_PATH)
    except (KvmrtError, OSError):
        return []
    return [vm.name for vm in config.vms if vm.name and vm.name.startswith(incomplete)]


vms_argument = click.argument("vms", nargs=-1, metavar="[VM]...", shell_complete=complete_vms)


def _set_wait(ctx: click.Context, param: click.Parameter, seconds: float) -> float:
    if math.isnan(seconds):     # FloatRange lets it through; it would wait forever
        raise click.BadParameter(f"{seconds} is not a number of seconds", ctx, param)
    lockfile.set_wait(seconds, notify=lambda line: click.echo(
        f"{ctx.command_path}: {line}", err=True))
    return seconds


wait_option = click.option(
    "--wait", type=click.FloatRange(min=0), default=lockfile.DEFAULT_WAIT, show_default=True,
    metavar="SECONDS", expose_value=False, callback=_set_wait,
    help="Wait up to SECONDS for a lock another kvmrt command holds; 0: do not wait.")


def require_root() -> None:
    """Tools that change the host or libvirt refuse to run without root,
    before changing anything (SPEC 5)."""
    if os.geteuid() != 0:
        fail("this changes the host or libvirt and needs root; run it with sudo")


def load(path: str | None) -> Config:
    """The config at ``path`` (default /etc/kvmrt.cfg); a missing one is
    reported with what makes one."""
    target = path or DEFAULT_PATH
    if path is not None and not os.path.lexists(path):
        fail(f"{path}: no such file (a mistyped -f path?); to create it from libvirt's "
             f"domains: kvmrt-import -f {shlex.quote(path)}")
    if not os.path.lexists(target):
        fail(f"{target}: no such file; create it from libvirt's domains with kvmrt-import "
             "(or write it with kvmrt-edit-config)")
    from kvmrt.config.file import load_config

    return load_config(target)


def libvirt_domains(uri: str | None) -> tuple[dict[str, Domain] | None, str | None]:
    """libvirt's persistent domains by lower-case UUID, or (None, why not)."""
    from kvmrt.libvirt_sync.connection import LibvirtError, connect
    from kvmrt.libvirt_sync.domains import Domains

    try:
        return {d.uuid.lower(): d for d in Domains(connect(uri, read_only=True)).all()}, None
    except LibvirtError as exc:
        return None, str(exc)


def refuse_broken_file(config: Config) -> None:
    """A tool that rewrites the file refuses one with load errors: the lines
    it cannot read would be lost."""
    errors = [p for p in config.problems if p.is_error]
    print_diagnostics(errors)
    if errors:
        fail(f"{config.path}: fix these {len(errors)} error(s) first (kvmrt-edit-config); "
             "rewriting the file would lose those lines")


def print_diagnostics(diagnostics: list) -> None:
    for d in diagnostics:
        click.echo(d.format(), err=True)


def print_results(results: list, *, verbose: bool) -> None:
    """One line per VM (a failure on stderr), its host changes, then notes
    (:func:`kvmrt.lifecycle.result_lines`)."""
    from kvmrt.lifecycle import result_lines

    for r in results:
        head, *rest = result_lines(r, verbose=verbose)
        click.echo(head, err=bool(r.error))
        for line in rest:
            click.echo(line)


def print_batch(what: str, result: Any, *, verbose: bool = False) -> None:
    """An engine run over the batch (:func:`kvmrt.lifecycle.batch_lines`)."""
    from kvmrt.lifecycle import batch_lines

    lines, warnings = batch_lines(what, result, verbose=verbose)
    for line in lines:
        click.echo(line)
    for line in warnings:
        click.echo(f"warning: {line}", err=True)


def host() -> Host:
    """The host under ``KVMRT_FSROOT`` (default ``/``)."""
    from kvmrt.host import HostFS, read_host

    return read_host(HostFS())


def print_json(data: Any) -> None:
    from kvmrt.commands import jsontext

    click.echo(jsontext.dumps(data))
