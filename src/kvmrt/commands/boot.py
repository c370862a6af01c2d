"""kvmrt-boot: tune the host and boot VMs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from kvmrt.commands import common

if TYPE_CHECKING:
    from kvmrt.config.file import Config
    from kvmrt.config.model import VmConfig
    from kvmrt.host.fs import HostFS


@common.command
@common.file_option
@common.connect_option
@common.wait_option
@click.option("--all", "every", is_flag=True,
              help="Boot every enabled VM, whether or not it has autostart "
                   "(disabled VMs are never booted).")
@click.option("--clean", is_flag=True,
              help="Tolerate no error: if any enabled VM of the config already runs, start "
                   "nothing, name those VMs and exit 1 (stop them with kvmrt-shutdown).")
@click.option("--dry-run", is_flag=True, help="Print the actions; change nothing.")
@common.vms_argument
def main(path: str | None, uri: str | None, every: bool, clean: bool,
         dry_run: bool, vms: tuple[str, ...]) -> None:
    """Validate the config, then tune the host and boot the autostart VMs
    (every enabled VM with --all, or the named ones), in config order.
    A disabled VM is never booted, and its problems with this host block
    nothing.

    For an rt VM: SMT siblings offline, its CPUs shielded from every other
    thread and IRQ, vfio IRQs on its IRQ CPU; then the domain XML is synced
    and the domain started. A VM that already runs is retuned (this repairs
    disturbed tuning, and pins its threads live). Every change is journaled
    first and undone at shutdown.
    """
    from kvmrt.guestsvc import service as guestsvc
    from kvmrt.host.fs import HostFS
    from kvmrt.libvirt_sync.connection import connect
    from kvmrt.libvirt_sync.domains import Domains
    from kvmrt.lifecycle import already_running, boot_vm, exit_status
    from kvmrt.tuning import engine, watcher

    if not dry_run:
        common.require_root()
    config, host, fs = common.load(path), common.host(), HostFS()
    selected = _selected(config, vms, every=every)
    common.refuse_errors(config, host, names=vms)
    domains = Domains(connect(uri))
    running = domains.running_uuids()
    if clean:
        _refuse_running(already_running(config, running))
    if not dry_run:
        common.print_recovery(engine.recover(fs, running))
    if any(vm.rt for vm in selected):
        _warn_irqbalance(fs)
    if not dry_run:
        guestsvc.prepare(selected)   # the channel sockets' directory, before QEMU starts
    results = [boot_vm(fs, domains, vm, host.topology, dry_run=dry_run) for vm in selected]
    if not dry_run:
        for note in guestsvc.start_for(config, path, domains.running_uuids()):
            click.echo(f"warning: {note}", err=True)
    if not dry_run and any(not vm.rt for vm in selected):
        # A non-rt VM started beside tuned rt VMs runs everywhere at first.
        common.print_recovery(engine.refresh(fs), what="shielded the new VMs' threads:")
    if not dry_run and any(vm.rt and vm.pcidevs for vm in selected):
        watcher.start_background(fs)
    common.print_results(results, verbose=dry_run)
    if not selected:
        click.echo("no VM to boot (none has autostart = true; name VMs or use --all)")
    sys.exit(exit_status(results))


def _selected(config: Config, vms: tuple[str, ...], *, every: bool) -> list[VmConfig]:
    from kvmrt.lifecycle import DisabledVmNamed, to_boot

    try:
        return to_boot(config, vms, every=every)
    except DisabledVmNamed as exc:
        common.print_diagnostics(exc.diagnostics)
        raise


def _refuse_running(running: list[VmConfig]) -> None:
    """--clean: nothing starts while any enabled VM of the config runs."""
    names = [vm.label for vm in running]
    if names:
        common.fail(f"--clean: nothing started, because VMs of the config already run: "
                    f"{', '.join(names)}; stop them first (kvmrt-shutdown {' '.join(names)})")


def _warn_irqbalance(fs: HostFS) -> None:
    from kvmrt.host.procs import IRQBALANCE, pids_named

    if pids_named(fs, IRQBALANCE):
        click.echo("warning: irqbalance is running and will move IRQs back onto shielded "
                   "CPUs; stop it (systemctl disable --now irqbalance) or ban the "
                   "real-time CPUs (IRQBALANCE_BANNED_CPULIST in /etc/default/irqbalance)",
                   err=True)
