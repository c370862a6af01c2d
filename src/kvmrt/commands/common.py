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
import os
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
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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


def _set_wait(ctx: click.Context, _param: click.Parameter, seconds: float) -> float:
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
    from kvmrt.config.file import load_config

    return load_config(path or DEFAULT_PATH)


def refuse_errors(config: Config, host: Host, **selection: Any) -> None:
    """Print the config's validation errors and exit 1 if there are any."""
    from kvmrt.validate import validate

    errors = [d for d in validate(config, host, **selection) if d.is_error]
    for d in errors:
        click.echo(d.format(), err=True)
    if errors:
        fail(f"{config.path}: {len(errors)} error(s); fix them first (kvmrt-edit-config)")


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
    for d in errors:
        click.echo(d.format(), err=True)
    if errors:
        fail(f"{config.path}: fix these {len(errors)} error(s) first (kvmrt-edit-config); "
             "rewriting the file would lose those lines")


def refuse_running(config: Config, running: set[str]) -> None:
    """--clean: nothing starts while any enabled VM of the config runs
    (a disabled VM is hidden: it neither boots nor blocks)."""
    names = [vm.label for vm in config.active() if vm.uuid.lower() in running]
    if names:
        fail(f"--clean: nothing started, because VMs of the config already run: "
             f"{', '.join(names)}; stop them first (kvmrt-shutdown {' '.join(names)})")


def to_boot(config: Config, names: tuple[str, ...], *, every: bool) -> list:
    """:func:`kvmrt.lifecycle.to_boot`, its refusal printed with each line."""
    from kvmrt.lifecycle import DisabledVmNamed, to_boot

    try:
        return to_boot(config, names, every=every)
    except DisabledVmNamed as exc:
        for d in exc.errors:
            click.echo(d.format(), err=True)
        fail(str(exc))


def summarize_actions(actions: list) -> str:
    from kvmrt.tuning.model import summarize

    return summarize(actions)


def print_actions(actions: list, *, verbose: bool, indent: str = "  ") -> None:
    if verbose:
        for a in actions:
            click.echo(f"{indent}{a.describe()}")
    elif actions:
        click.echo(f"{indent}changed: {summarize_actions(actions)}")


def print_recovery(result: Any, *, what: str = "") -> None:
    """What recovery after an interrupted kvmrt put back (or, with ``what``,
    another engine run did)."""
    if result.actions and what:
        click.echo(f"{what} {summarize_actions(result.actions)}")
    elif result.actions:
        click.echo(f"recovered: restored {len(result.actions)} settings left by an "
                   "interrupted kvmrt or a VM stopped without kvmrt-shutdown")
    for line in result.notes + result.refused + result.failed:
        click.echo(f"warning: {line}", err=True)


def print_restored(result: Any) -> None:
    if result.actions:
        click.echo("host: restored")
        print_actions(result.actions, verbose=False)
    for line in result.notes + result.refused + result.failed:
        click.echo(f"  note: {line}")


def print_results(results: list, *, verbose: bool) -> None:
    """One line per VM, its host changes, then notes; errors on stderr."""
    for r in results:
        if r.error:
            click.echo(f"{r.name}: failed: {r.error}", err=True)
        else:
            click.echo(f"{r.name}: {r.status}")
        print_actions(r.actions, verbose=verbose)
        for note in r.notes:
            click.echo(f"  note: {note}")


def host() -> Host:
    """The host under ``KVMRT_FSROOT`` (default ``/``)."""
    from kvmrt.host import HostFS, read_host

    return read_host(HostFS())


def print_json(data: Any) -> None:
    from kvmrt.commands import jsontext

    click.echo(jsontext.dumps(data))
