"""kvmrt-boot: tune the host and boot VMs."""

from __future__ import annotations

import sys

import click

from kvmrt.commands import common


@common.command
@common.file_option
@common.connect_option
@common.wait_option
@click.option("--all", "every", is_flag=True,
              help="Boot every enabled VM, whether or not it has autostart "
                   "(disabled VMs are never booted).")
@click.option("--clean", is_flag=True,
              help="If any enabled VM of the config already runs, start nothing, name "
                   "those VMs and exit 1 (stop them with kvmrt-shutdown).")
@click.option("--dry-run", is_flag=True,
              help="Print every host change and what would start; change nothing.")
@common.json_option
@common.vms_argument
def main(path: str | None, uri: str | None, every: bool, clean: bool,
         dry_run: bool, as_json: bool, vms: tuple[str, ...]) -> None:
    """Validate the config, then tune the host and boot the autostart VMs
    (every enabled VM with --all, or the named ones), in config order.
    A disabled VM is never booted, and its problems with this host block
    nothing.

    For an rt VM: SMT siblings offline, its CPUs shielded from every other
    thread and IRQ, vfio IRQs on its IRQ CPU; then the domain XML is synced
    and the domain started. A VM that already runs is retuned (this repairs
    disturbed tuning, and pins its threads live). Every change is journaled
    first and undone at shutdown. Each step is printed as it begins, each
    host change logged to the system log (journalctl -t kvmrt).
    """
    from kvmrt.commands.outcome import Outcome
    from kvmrt.host.fs import HostFS
    from kvmrt.libvirt_sync.connection import connect
    from kvmrt.libvirt_sync.domains import Domains
    from kvmrt.lifecycle import boot

    if not dry_run:
        common.require_root()
    config, host = common.load(path), common.host()
    out = Outcome(as_json=as_json, plan=dry_run)
    report = boot(HostFS(), lambda: Domains(connect(uri)), config, host, vms, every=every,
                  clean=clean, dry_run=dry_run, listener=out)
    out.finish(lambda results: common.print_results(results, verbose=dry_run))
    if not report.selected and not as_json:
        click.echo("no VM to boot (none has autostart = true; name VMs or use --all)")
    sys.exit(out.exit_code)
