"""The PCI devices a config passes through, one check per device.

For each address in an active VM's ``pcidevs``: the device exists
(``/sys/bus/pci/devices``), its driver (``vfio-pci``, none, or one the host
may be using), its IOMMU group is wholly given to the VM (bridges excepted,
as VFIO does), and its NUMA node is one the VM's CPUs are on.
"""

from __future__ import annotations

from typing import Iterator

from kvmrt.config.model import VmConfig
from kvmrt.sets import PciAddress, format_ids
from kvmrt.errors import UnknownHostObject
from kvmrt.hostcheck.context import Context
from kvmrt.hostcheck.registry import check_each
from kvmrt.hostcheck.result import Finding, Status
from kvmrt.host.model import PciDevice

Part = tuple[Status, str, str | None]


@check_each("pcidev")
def pcidevs(ctx: Context) -> Iterator[tuple[str, Finding]]:
    """Each passthrough device: exists, driver, whole IOMMU group, NUMA node."""
    if ctx.config is None:
        return
    for vm in ctx.config.active():
        if "pcidevs" in vm.invalid:
            continue
        for address in vm.pcidevs:
            yield str(address), device_finding(ctx, vm, address)


def device_finding(ctx: Context, vm: VmConfig, address: PciAddress) -> Finding:
    dev = ctx.host.pci.get(address)
    if dev is None:
        return Finding(Status.FAIL, f"{vm.label}: {address} does not exist on this host",
                       f"correct pcidevs of {vm.label} in {ctx.config_name} "
                       "(kvmrt-show-host lists the devices)")
    parts = [driver_part(ctx, dev), group_part(ctx, vm, dev), node_part(ctx, vm, dev)]
    status = max((p[0] for p in parts), key=_rank)
    remedies = [p[2] for p in parts if p[2]]
    return Finding(status, f"{vm.label}: {address} " + ", ".join(p[1] for p in parts),
                   "; ".join(remedies) or None)


def _rank(status: Status) -> int:
    return [Status.PASS, Status.WARN, Status.FAIL].index(status)


def driver_part(ctx: Context, dev: PciDevice) -> Part:
    if dev.driver == "vfio-pci":
        return Status.PASS, "bound to vfio-pci", None
    if dev.driver is None:
        return Status.PASS, "unbound (libvirt binds it to vfio-pci at VM start)", None
    ids = _pci_ids(ctx, dev)
    return (Status.WARN, f"bound to host driver {dev.driver} (libvirt detaches it at VM "
            "start, which breaks whatever the host uses it for)",
            f"bind {dev.address} to vfio-pci at boot: 'driverctl set-override {dev.address} "
            f"vfio-pci', or vfio-pci.ids={ids} on the kernel command line (every device "
            "with that ID)")


def _pci_ids(ctx: Context, dev: PciDevice) -> str:
    base = f"sys/bus/pci/devices/{dev.address}"
    vendor = ctx.fs.read(f"{base}/vendor", default="0x????")
    device = ctx.fs.read(f"{base}/device", default="0x????")
    return f"{vendor.removeprefix('0x')}:{device.removeprefix('0x')}"


def group_part(ctx: Context, vm: VmConfig, dev: PciDevice) -> Part:
    if dev.iommu_group is None:
        return (Status.FAIL, "has no IOMMU group",
                "turn the IOMMU on (see the iommu check)")
    others = {a for a in ctx.host.group_members(dev.address) - {dev.address}
              if not ctx.host.pci[a].bridge}
    missing = sorted(others - set(vm.pcidevs))
    if not missing:
        return Status.PASS, f"IOMMU group {dev.iommu_group} wholly given to the VM", None
    names = " ".join(map(str, missing))
    return (Status.FAIL, f"IOMMU group {dev.iommu_group} also holds {names}, not given "
            "to the VM (VFIO needs the whole group)",
            f"add {names} to pcidevs of {vm.label}, or move the card to a slot with its "
            "own IOMMU group")


def node_part(ctx: Context, vm: VmConfig, dev: PciDevice) -> Part:
    if dev.numa_node is None:
        return Status.PASS, "no NUMA affinity", None
    try:
        nodes = ctx.host.topology.nodes_of(vm.cpuset.resolve(ctx.host.topology))
    except UnknownHostObject:  # kvmrt-validate-config reports it
        nodes = frozenset()
    if not nodes or dev.numa_node in nodes:
        return Status.PASS, f"NUMA node {dev.numa_node}", None
    return (Status.WARN, f"on NUMA node {dev.numa_node} while the VM's CPUs are on "
            f"node(s) {format_ids(nodes)}",
            f"give {vm.label} CPUs of node {dev.numa_node} (cpuset n{dev.numa_node})")
