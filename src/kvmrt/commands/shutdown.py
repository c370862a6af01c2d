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
              help="Shut VMs down one after another (not all at once), and list each "
                   "host setting put back.")
@click.option("--force", is_flag=True,
              help="Power off a VM that does not stop within the timeout (else it is "
                   "left running, reported as failed, and its tuning stays).")
@click.option("--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True,
              metavar="S", help="Seconds to wait for each VM (for all, when concurrent).")
@click.option("--dry-run", is_flag=True,
              help="Print which VMs would be shut down and every host setting that would be "
                   "put back; change nothing.")
@common.json_option
@common.vms_argument
def main(path: str | None, uri: str | None, include_disabled: bool, verbose: bool,
         force: bool, timeout: float, dry_run: bool, as_json: bool,
         vms: tuple[str, ...]) -> None:
    """Shut down the running VMs of the config (all by default, or the named
    ones), concurrently unless -v, then put back every host setting kvmrt
    changed for them that no other running rt VM still needs. Each VM is
    printed when it stops, with a line every 10 s while it waits; each host
    change is logged to the system log (journalctl -t kvmrt).
    """
    from kvmrt.commands.outcome import Outcome
    from kvmrt.host.fs import HostFS
    from kvmrt.libvirt_sync.connection import connect
    from kvmrt.libvirt_sync.domains import Domains
    from kvmrt.lifecycle import shutdown

    if not dry_run:
        common.require_root()
    config = common.load(path)
    out = Outcome(as_json=as_json, verbose=verbose)
    report = shutdown(HostFS(), Domains(connect(uri)), config, vms,
                      include_disabled=include_disabled, force=force, timeout=timeout,
                      sequential=verbose, dry_run=dry_run, listener=out)
    if dry_run:
        _show_plan(report, as_json=as_json)
        return
    out.finish(_show_failures)
    if not report.results and not as_json:
        click.echo("no VM of the config is running")
    sys.exit(out.exit_code)


def _show_failures(results: list) -> None:
    """The progress lines named each VM as it stopped; failures go to stderr."""
    for r in results:
        if r.error:
            click.echo(f"{r.name}: failed: {r.error}", err=True)


def _show_plan(report, *, as_json: bool) -> None:
    """``--dry-run``: the VMs that would stop and every host setting that
    would be put back (with ``--json``, the document of kvmrt-boot's plan)."""
    from kvmrt.commands.outcome import changes_json
    from kvmrt.lifecycle import action_lines

    if as_json:
        common.print_json({
            "vms": [{"name": name, "status": "would be shut down", "error": None,
                     "notes": [], "host_changes": 0, "changes": []}
                    for name in report.would_stop],
            "host": [{"what": "would be restored", "host_changes": len(report.planned),
                      "notes": [], "failed": [], "changes": changes_json(report.planned)}]})
        return
    click.echo("would shut down: " + (", ".join(report.would_stop) or "nothing"))
    for line in action_lines(report.planned, verbose=True):
        click.echo(line)
