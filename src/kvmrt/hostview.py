"""The host as ``kvmrt-show-host`` presents it: values and their users."""

from __future__ import annotations

from dataclasses import dataclass, field

from kvmrt.config.file import Config
from kvmrt.sets import PciAddress
from kvmrt.host.model import Host
from kvmrt.placement import place_all


@dataclass
class Owners:
    """Which VMs use each CPU (an rt VM: its cpuset and owned siblings) and
    each PCI device."""

    cpus: dict[int, list[str]] = field(default_factory=dict)
    devices: dict[PciAddress, list[str]] = field(default_factory=dict)


def owners_of(config: Config, host: Host) -> Owners:
    """Owners from the active VMs of ``config``; VMs whose cpuset does not
    resolve on this host are left out (the validator reports them)."""
    owners = Owners()
    for p in place_all(config.active(), host.topology):
        vm = p.vm
        for cpu in sorted(p.owned_cpus):
            owners.cpus.setdefault(cpu, []).append(vm.name)
        for address in vm.pcidevs:
            owners.devices.setdefault(address, []).append(vm.name)
    return owners


def host_json(host: Host, owners: Owners) -> dict:
    topo = host.topology
    return {
        "cpus": [
            {"cpu": c.cpu, "online": c.online, "package": c.package, "die": c.die,
             "core": c.core, "node": c.node, "siblings": sorted(c.siblings),
             "vms": owners.cpus.get(c.cpu, [])}
            for c in sorted(topo.cpus.values(), key=lambda c: c.cpu)
        ],
        "nodes": [{"node": n, "cpus": sorted(cpus)} for n, cpus in topo.nodes.items()],
        "pci": [
            {"address": str(d.address), "numa_node": d.numa_node,
             "iommu_group": d.iommu_group,
             "group_members": sorted(str(m) for m in host.group_members(d.address))
             if d.iommu_group is not None else [],
             "driver": d.driver,
             "class": f"0x{d.pci_class:06x}" if d.pci_class is not None else None,
             "bridge": d.bridge, "vms": owners.devices.get(d.address, [])}
            for d in sorted(host.pci.values(), key=lambda d: d.address)
        ],
    }
