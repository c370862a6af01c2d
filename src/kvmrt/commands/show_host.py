"""kvmrt-show-host: the host's topology and PCI devices, as CPUSET sees them."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from kvmrt.commands import common
from kvmrt.config import DEFAULT_PATH
from kvmrt.sets import format_ids

if TYPE_CHECKING:
    from kvmrt.host.model import Host
    from kvmrt.hostview import Owners


@common.command
@common.file_option
@common.json_option
def main(path: str | None, as_json: bool) -> None:
    """Show the CPU topology as a tree (package -> die -> NUMA node -> core ->
    CPUs) with online state and the logical core and die numbers that CPUSET
    uses (c3, d1), and the PCI devices grouped by IOMMU group with NUMA node
    and driver.

    With a config (-f FILE, or /etc/kvmrt.cfg when it exists), each CPU and
    device is marked with the VM that uses it; errors in that config are
    printed on stderr and give exit status 1.
    """
    from kvmrt.hostview import Owners, host_json, owners_of

    host = common.host()
    owners, problems = Owners(), []
    if path or os.path.exists(DEFAULT_PATH):
        config = common.load(path)
        owners, problems = owners_of(config, host), [p for p in config.problems if p.is_error]
    if as_json:
        common.print_json(host_json(host, owners))
    else:
        click.echo("\n".join(_cpu_tree(host, owners) + [""] + _pci_list(host, owners)))
    for p in problems:
        click.echo(p.format(), err=True)
    sys.exit(1 if problems else 0)


def _cpu_tree(host: Host, owners: Owners) -> list[str]:
    topo = host.topology
    lines = [f"CPUs {format_ids(topo.all_cpus)} (online {format_ids(topo.online_cpus)})"]
    for package, pkg_cpus in topo.packages.items():
        lines.append(f"package p{package}")
        for die, die_cpus in topo.dies.items():
            if not die_cpus & pkg_cpus:
                continue
            lines.append(f"  die d{die}")
            for node, node_cpus in topo.nodes.items():
                cores = {c: cpus for c, cpus in topo.cores.items() if cpus & die_cpus & node_cpus}
                if not cores:
                    continue
                lines.append(f"    node n{node}")
                for core, cpus in cores.items():
                    lines.append(_core(host, core, cpus, owners))
    hidden = sorted(c for c, info in topo.cpus.items() if info.core is None)
    if hidden:
        lines.append(f"offline, topology hidden by the kernel: CPUs {format_ids(hidden)}")
    nodeless = sorted(c for c, info in topo.cpus.items() if info.node is None and c not in hidden)
    if nodeless:
        lines.append(f"on no NUMA node sysfs shows: CPUs {format_ids(nodeless)}")
    empty = [n for n, cpus in topo.nodes.items() if not cpus]
    if empty:
        lines.append(f"memory-only nodes (no CPUs): {format_ids(empty)}")
    return lines


def _core(host: Host, core: int, cpus: frozenset[int], owners: Owners) -> str:
    """``core c8    8  40(offline)    RedHawk-8.4-RT``"""
    text = "  ".join(f"{c}" + ("" if host.topology.cpus[c].online else "(offline)")
                     for c in sorted(cpus))
    vms = dict.fromkeys(vm for c in sorted(cpus) for vm in owners.cpus.get(c, ()))
    return (f"      core c{core:<5}{text:<24}" + ", ".join(vms)).rstrip()


def _pci_list(host: Host, owners: Owners) -> list[str]:
    lines = ["PCI devices"]
    by_group: dict[int | None, list] = {}
    for dev in sorted(host.pci.values(), key=lambda d: d.address):
        by_group.setdefault(dev.iommu_group, []).append(dev)
    for group in sorted(by_group, key=lambda g: (g is None, g or 0)):
        lines.append(f"  IOMMU group {group}" if group is not None else "  no IOMMU group")
        for dev in by_group[group]:
            vms = owners.devices.get(dev.address)
            lines.append(
                f"    {dev.address}  node {'-' if dev.numa_node is None else dev.numa_node:<3}"
                f" class {dev.pci_class or 0:06x}{' bridge' if dev.bridge else '       '}"
                f"  driver {dev.driver or '-'}" + (f"  [{','.join(vms)}]" if vms else ""))
    if not host.pci:
        lines.append("  (none)")
    return lines
