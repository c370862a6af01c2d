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
    from kvmrt.host.model import Topology


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
    from kvmrt.guestsvc import service as guestsvc
    from kvmrt.host.fs import HostFS
    from kvmrt.hostlog import HostLog
    from kvmrt.libvirt_sync.connection import connect
    from kvmrt.libvirt_sync.domains import Domains
    from kvmrt.lifecycle import already_running, boot_vm, quiet
    from kvmrt.tuning import engine, watcher

    if dry_run and as_json:
        # Seam: the --dry-run plan gets its JSON form with the plan's new type.
        common.fail("--json with --dry-run is not available yet; use --dry-run alone")
    if not dry_run:
        common.require_root()
    config, host, fs = common.load(path), common.host(), HostFS()
    selected = _selected(config, vms, every=every)
    common.refuse_errors(config, host, names=vms)
    domains = Domains(connect(uri))
    running = domains.running_uuids()
    if clean:
        _refuse_running(already_running(config, running))
    out = Outcome(as_json=as_json, log=None if dry_run else HostLog())
    if not dry_run:
        recovered = engine.recover(fs, running)
        out.batch("recovered", recovered, lambda: common.print_recovery(recovered))
    if any(vm.rt for vm in selected):
        _warn_irqbalance(fs, config, host.topology)
    if not dry_run:
        guestsvc.prepare(selected)   # the channel sockets' directory, before QEMU starts
    progress = quiet if dry_run else out.progress
    for vm in selected:
        out.record(boot_vm(fs, domains, vm, host.topology, dry_run=dry_run, progress=progress))
    if not dry_run:
        for note in guestsvc.start_for(config, path, domains.running_uuids()):
            click.echo(f"warning: {note}", err=True)
    if not dry_run and any(not vm.rt for vm in selected):
        # A non-rt VM started beside tuned rt VMs runs everywhere at first.
        refreshed = engine.refresh(fs)
        out.batch("shielded new threads", refreshed, lambda: common.print_recovery(
            refreshed, what="shielded the new VMs' threads:"))
    if not dry_run and any(vm.rt and vm.pcidevs for vm in selected):
        watcher.start_background(fs)
    out.finish(lambda results: common.print_results(results, verbose=dry_run))
    if not selected and not as_json:
        click.echo("no VM to boot (none has autostart = true; name VMs or use --all)")
    sys.exit(out.exit_code)


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


def banned_cpulist(config: Config, topology: Topology) -> str:
    """The CPUs irqbalance must leave alone: those the rt VMs of the config
    own (their cpusets and the SMT siblings of those cores)."""
    from kvmrt.placement import place_all
    from kvmrt.sets import format_ids

    placed = place_all((vm for vm in config.active() if vm.rt), topology)
    return format_ids(frozenset().union(*(p.owned_cpus for p in placed)))


def _warn_irqbalance(fs: HostFS, config: Config, topology: Topology) -> None:
    from kvmrt.host.procs import IRQBALANCE, pids_named

    if pids_named(fs, IRQBALANCE):
        click.echo("warning: irqbalance is running and will move IRQs back onto shielded "
                   "CPUs; stop it (systemctl disable --now irqbalance) or ban the "
                   "real-time CPUs with this line in /etc/default/irqbalance "
                   "(/etc/sysconfig/irqbalance on RHEL), then restart it: "
                   f"IRQBALANCE_BANNED_CPULIST={banned_cpulist(config, topology)}",
                   err=True)
