"""kvmrt-stat: the state of each VM and of its real-time tuning."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from kvmrt.commands import common
from kvmrt.sets import format_ids

if TYPE_CHECKING:
    from kvmrt.status import VmStatus


@common.command
@common.file_option
@common.connect_option
@common.all_option
@click.option("-t", "--threads", is_flag=True,
              help="List every QEMU thread of each running VM with its role, CPU "
                   "affinity and the CPU it last ran on.")
@click.option("--check", is_flag=True,
              help="Monitoring: first line OK or CRITICAL, then one line per problem (a "
                   "running rt VM's tuning disturbed, an autostart VM not running, the vfio "
                   "IRQ watcher failing); exit 0 when none, else 1.")
@common.json_option
@common.vms_argument
def main(path: str | None, uri: str | None, include_disabled: bool, threads: bool,
         check: bool, as_json: bool, vms: tuple[str, ...]) -> None:
    """One row per VM: name, title, state, rt, vCPUs, cpuset and whether its
    real-time tuning holds: 'ok', or 'disturbed' with what is wrong; for a
    running VM whose config was changed since it started, what differs and
    what applies it. Never changes anything; reports changes an interrupted
    kvmrt left behind. Works for any user (libvirt read-only).
    """
    from kvmrt.host.fs import HostFS
    from kvmrt.libvirt_sync.connection import connect
    from kvmrt.libvirt_sync.domains import Domains
    from kvmrt.lifecycle import RUNNING
    from kvmrt.status import collect, leftovers
    from kvmrt.tuning.journal import Journal

    config, host, fs = common.load(path), common.host(), HostFS()
    domains = Domains(connect(uri, read_only=True))
    selected = config.select(vms, include_disabled=include_disabled)
    states = {vm.uuid.lower(): domains.state(vm.uuid) for vm in selected}
    runtimes = {u: domains.runtime(u) for u, state in states.items() if state in RUNNING}
    journal = Journal.for_host(fs).load()
    found = collect(fs, selected, states, host.topology, journal, threads=threads,
                    runtimes={u: r for u, r in runtimes.items() if r is not None})
    warnings = leftovers(journal, domains.running_uuids())
    if check:
        from kvmrt.tuning import watcher

        report_check(problems(found) + watcher.problems(fs, journal) + warnings,
                     as_json=as_json)
    services = _guest_services(found)
    if as_json:
        common.print_json([{**s.as_json(), "guest_services": services.get(s.vm.uuid.lower())}
                           for s in found])
    else:
        _table(found, services, threads=threads)
    for line in warnings:
        click.echo(f"warning: {line}", err=True)


def problems(found: list[VmStatus]) -> list[str]:
    """What monitoring must hear of: each disturbance of a running rt VM's
    tuning, each autostart VM that is not running."""
    from kvmrt.lifecycle import RUNNING

    lines = []
    for s in found:
        if s.tuning == "disturbed":
            lines += [f"{s.vm.name}: tuning disturbed: {p}" for p in s.problems]
        if s.vm.autostart and not s.vm.disabled and s.state not in RUNNING:
            lines.append(f"{s.vm.name}: autostart VM is {s.state}")
    return lines


def report_check(found: list[str], *, as_json: bool) -> None:
    """``OK: ...`` or ``CRITICAL: ...`` then one line per problem, as
    monitoring plugins print; exit 0 or 1."""
    status = "CRITICAL" if found else "OK"
    if as_json:
        common.print_json({"status": status, "problems": found})
    elif found:
        click.echo(f"CRITICAL: {len(found)} problem(s): {found[0]}")
        for line in found:
            click.echo(line)
    else:
        click.echo("OK: every running rt VM is tuned, every autostart VM runs")
    sys.exit(1 if found else 0)


def _guest_services(found: list[VmStatus]) -> dict[str, str]:
    """For each running VM with guest services: ``connected`` (kvmrt-gsd
    serves it), ``listening`` (QEMU's socket waits for kvmrt-gsd) or ``off``."""
    from kvmrt.lifecycle import RUNNING

    served = [s.vm.uuid for s in found if s.vm.guest_services and s.state in RUNNING]
    if not served:
        return {}      # the daemon's module and its imports cost ~50 ms
    from kvmrt.guestsvc.daemon import connection_state

    return {uuid.lower(): connection_state(uuid) for uuid in served}


def _table(found: list[VmStatus], services: dict[str, str], *, threads: bool) -> None:
    click.echo(f"{'NAME':<20} {'STATE':<10} {'RT':<3} {'VCPUS':>5} {'CPUSET':<16} "
               f"{'TUNING':<10} TITLE")
    for s in found:
        p = s.placement
        click.echo(f"{s.vm.name:<20} {s.state:<10} {'yes' if s.vm.rt else 'no':<3} "
                   f"{p.nr_vcpus if p else '-':>5} {(format_ids(p.cpuset) or '-') if p else '-':<16} "
                   f"{s.tuning or '-':<10} {s.vm.title}".rstrip())
        for problem in s.problems:
            click.echo(f"    {problem}")
        for line in s.pending:
            click.echo(f"    config: {line}")
        if s.vm.uuid.lower() in services:
            click.echo(f"    guest services: {services[s.vm.uuid.lower()]}")
        if s.threads:
            click.echo(f"    {'TID':>8}  {'THREAD':<18} {'ROLE':<11} {'AFFINITY':<12} CPU")
        for t in s.threads or []:
            click.echo(f"    {t.tid:>8}  {t.name:<18} {t.role:<11} "
                       f"{format_ids(t.affinity):<12} {'-' if t.cpu is None else t.cpu}")
