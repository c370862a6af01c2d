"""kvmrt-shutdown: shut VMs down and remove their real-time policies."""

from __future__ import annotations

import sys

import click

from kvmrt.commands import common


@common.command
@common.file_option
@common.connect_option
@common.wait_option
@common.all_option
@click.option("-v", "--verbose", is_flag=True,
              help="Shut VMs down one after another, with progress lines.")
@click.option("--force", is_flag=True, help="Power off a VM that does not stop in time.")
@click.option("--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True,
              metavar="S", help="Seconds to wait for each VM (for all, when concurrent).")
@click.option("--dry-run", is_flag=True, help="Print what would be restored; change nothing.")
@common.vms_argument
def main(path: str | None, uri: str | None, include_disabled: bool, verbose: bool,
         force: bool, timeout: float, dry_run: bool, vms: tuple[str, ...]) -> None:
    """Shut down the running VMs of the config (all by default, or the named
    ones), concurrently unless -v, then put back every host setting kvmrt
    changed for them that no other running rt VM still needs.
    """
    from kvmrt.guestsvc import service as guestsvc
    from kvmrt.host.fs import HostFS
    from kvmrt.libvirt_sync.connection import connect
    from kvmrt.libvirt_sync.domains import Domains
    from kvmrt.lifecycle import exit_status, plan_shutdown, shutdown_vms, to_shut_down
    from kvmrt.tuning import engine

    if not dry_run:
        common.require_root()
    config, fs = common.load(path), HostFS()
    domains = Domains(connect(uri))
    selected = to_shut_down(config, vms, include_disabled=include_disabled)
    if dry_run:
        running, planned = plan_shutdown(fs, domains, selected)
        click.echo("would shut down: " + (", ".join(vm.name for vm in running) or "nothing"))
        common.print_actions(planned.actions, verbose=True)
        return
    say = click.echo if verbose else (lambda _line: None)
    results, restored = shutdown_vms(fs, domains, selected, force=force, timeout=timeout,
                                     sequential=verbose, say=say)
    if not verbose:    # -v printed each VM's progress already
        common.print_results(results, verbose=False)
    else:
        for r in results:
            if r.error:
                click.echo(f"{r.name}: failed: {r.error}", err=True)
    common.print_restored(restored)
    for note in guestsvc.stop_for(config, domains.running_uuids()):
        say(note)
    common.print_recovery(engine.recover(fs, domains.running_uuids()))
    if not results:
        click.echo("no VM of the config is running")
    sys.exit(exit_status(results))
