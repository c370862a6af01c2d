"""kvmrt-sync-config: write the config into libvirt, or (-r) the other way."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from kvmrt.commands import common

if TYPE_CHECKING:
    from kvmrt.libvirt_sync.sync import Outcome


@common.command
@common.file_option
@common.connect_option
@common.wait_option
@common.all_option
@click.option("-r", "--reverse", is_flag=True,
              help="Take name, title, description, pinning, vCPUs, topology, numatune, "
                   "locked memory, hidden KVM, PCI devices and the guest services channel "
                   "from libvirt into the config.")
@click.option("-q", "--query", is_flag=True,
              help="Change nothing; list each VM out of step with a diff (exit 1 if any).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per VM: vm, status, diff, messages.")
@common.vms_argument
def main(path: str | None, uri: str | None, include_disabled: bool, reverse: bool,
         query: bool, as_json: bool, vms: tuple[str, ...]) -> None:
    """Keep the config and libvirt's domain XML in step.

    By default writes what kvmrt owns in each VM's domain XML (name, title,
    description, vCPUs, topology, pinning, numatune, locked memory, hidden
    KVM, PCI hostdevs); everything else in the XML stays as it is,
    passwords included, and each tuning element removed is named. Refuses
    a config with validation errors. Each domain XML written is logged to
    the system log (journalctl -t kvmrt).
    """
    if not query:
        common.require_root()
    if reverse:
        outcomes = _from_libvirt(path, uri, include_disabled, query, vms)
    else:
        outcomes = _to_libvirt(path, uri, include_disabled, query, vms)
        if not query:
            _log(outcomes)
    if as_json:
        report_json(outcomes, query=query)
    report(outcomes, query=query)


def _log(outcomes: list[Outcome]) -> None:
    from kvmrt.hostlog import HostLog
    from kvmrt.libvirt_sync.sync import SyncStatus

    log = HostLog()
    for o in outcomes:
        if o.status is SyncStatus.UPDATED:
            log.info(f"{o.vm}: domain XML updated")
        elif o.status is SyncStatus.FAILED:
            log.warning(f"{o.vm}: domain XML not updated: {'; '.join(o.messages)}")


def _to_libvirt(path, uri, include_disabled, query, vms) -> list[Outcome]:
    from kvmrt.libvirt_sync.connection import connect
    from kvmrt.libvirt_sync.domains import Domains
    from kvmrt.libvirt_sync.sync import sync_to_libvirt
    from kvmrt.validate import require_valid

    config, host = common.load(path), common.host()
    require_valid(config, host, include_disabled=include_disabled, names=vms)
    selected = config.select(vms, include_disabled=include_disabled)
    domains = Domains(connect(uri, read_only=query))
    return sync_to_libvirt(selected, host.topology, domains, query=query, path=config.path)


def _from_libvirt(path, uri, include_disabled, query, vms) -> list[Outcome]:
    from kvmrt.config.file import editing, write_config
    from kvmrt.libvirt_sync.connection import connect
    from kvmrt.libvirt_sync.domains import Domains
    from kvmrt.libvirt_sync.importer import sync_from_libvirt
    from kvmrt.libvirt_sync.sync import SyncStatus

    host = common.host()
    if query:
        config = common.load(path)
        selected = config.select(vms, include_disabled=include_disabled)
        domains = Domains(connect(uri, read_only=True))
        return sync_from_libvirt(config, selected, host, domains, query=True)
    with editing(path or common.DEFAULT_PATH) as config:
        common.refuse_broken_file(config)
        selected = config.select(vms, include_disabled=include_disabled)
        outcomes = sync_from_libvirt(config, selected, host, Domains(connect(uri)),
                                     query=False)
        if any(o.status is SyncStatus.UPDATED for o in outcomes):
            write_config(config)
    return outcomes


def report_json(outcomes: list[Outcome], *, query: bool) -> None:
    """``[{"vm", "status", "diff", "messages"}]`` (the diff a unified diff,
    "" when none), then the exit status of :func:`report`."""
    common.print_json([{"vm": o.vm, "status": o.status, "diff": o.diff,
                        "messages": list(o.messages)} for o in outcomes])
    sys.exit(_exit_code(outcomes, query=query))


def _exit_code(outcomes: list[Outcome], *, query: bool) -> int:
    from kvmrt.libvirt_sync.sync import SyncStatus

    bad = {SyncStatus.FAILED, SyncStatus.OUT_OF_STEP} if query else {SyncStatus.FAILED}
    return 1 if any(o.status in bad for o in outcomes) else 0


def report(outcomes: list[Outcome], *, query: bool) -> None:
    """One line per VM (diffs below), then exit 1 on failure or, with -q,
    when anything is out of step."""
    from kvmrt.libvirt_sync.sync import SyncStatus

    for o in outcomes:
        if o.status is SyncStatus.FAILED:
            click.echo(f"{o.vm}: failed: {'; '.join(o.messages)}", err=True)
            continue
        click.echo(f"{o.vm}: {o.status}")
        if o.diff:
            click.echo(o.diff, nl=not o.diff.endswith("\n"))
        for message in o.messages:
            click.echo(f"warning: {message}", err=True)
    sys.exit(_exit_code(outcomes, query=query))
