"""kvmrt-validate-host: is this machine fit to be a real-time KVM host?"""

from __future__ import annotations

import os
import sys

import click

from kvmrt.commands import common
from kvmrt.config import DEFAULT_PATH


@common.command
@common.file_option
@common.connect_option
@common.json_option
@click.option("-q", "--quiet", is_flag=True, help="Print only WARN, FAIL and SKIP.")
def main(path: str | None, uri: str | None, as_json: bool, quiet: bool) -> None:
    """Check that this host is fit to be a real-time KVM host: what
    virt-host-validate checks for QEMU/KVM (virtualization, /dev/kvm, IOMMU,
    cgroups...) plus vfio-pci, libvirt and QEMU, the PREEMPT_RT kernel,
    isolcpus/nohz_full/rcu_nocbs/irqaffinity, irqbalance, CPU frequency and
    idle states, real-time throttling, THP, KSM, NUMA balancing, timers, the
    clocksource, memory locking, huge pages, SMT and cgroups.

    Prints one line per check (PASS, WARN, FAIL, or SKIP for a check that
    was not performed, with why) and, below each WARN and FAIL, what to
    change. With a config (-f FILE, or /etc/kvmrt.cfg when it
    exists) the checks also cover its rt VMs: exact kernel parameters for
    their CPUs, their PCI devices, their memory. Changes nothing; runs as an
    ordinary user too. Exits 1 when a check fails, else 0.
    """
    from kvmrt.host import HostFS
    from kvmrt.hostcheck import Status, format_report, validate_host

    config = common.load(path) if path or os.path.exists(DEFAULT_PATH) else None
    report = validate_host(HostFS(), config=config, uri=uri)
    if as_json:
        data = report.as_json()
        if quiet:
            data["checks"] = [c for c in data["checks"] if c["status"] != Status.PASS.value]
        common.print_json(data)
    else:
        click.echo(format_report(report, quiet=quiet), nl=False)
    sys.exit(report.exit_code)
