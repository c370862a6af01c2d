"""What every kvmrt command shares: options, loading, errors, output.

Only the command layer prints. Library code raises :class:`KvmrtError`
subclasses; :func:`run` turns them into one line on stderr and exit 1.
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable

import click

from kvmrt.config.file import DEFAULT_PATH, Config, load_config
from kvmrt.errors import KvmrtError
from kvmrt.host import HostFS, read_host
from kvmrt.host.model import Host
from kvmrt.libvirt_sync.connection import LibvirtError, connect
from kvmrt.libvirt_sync.domains import Domain, Domains

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

    return click.command(context_settings=CONTEXT)(wrapper)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"{click.get_current_context().command_path}: {message}", err=True)
    sys.exit(code)


file_option = click.option(
    "-f", "--file", "path", default=None, metavar="FILE",
    help=f"Config file (default {DEFAULT_PATH}).")
all_option = click.option(
    "--all", "include_disabled", is_flag=True, help="Include disabled VMs.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
connect_option = click.option(
    "-c", "--connect", "uri", default=None, metavar="URI",
    help="libvirt URI (default: $LIBVIRT_DEFAULT_URI, else qemu:///system).")
vms_argument = click.argument("vms", nargs=-1, metavar="[VM]...")


def require_root(what: str) -> None:
    """Tools that change the host or libvirt refuse to run without root,
    before changing anything (SPEC 5)."""
    if os.geteuid() != 0:
        fail(f"{what} needs root; run it with sudo")


def load(path: str | None) -> Config:
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
    try:
        return {d.uuid.lower(): d for d in Domains(connect(uri)).all()}, None
    except LibvirtError as exc:
        return None, str(exc)


def host() -> Host:
    """The host under ``KVMRT_FSROOT`` (default ``/``)."""
    return read_host(HostFS())


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))
