"""Read the host's PCI functions from sysfs.

``sys/bus/pci/devices/<address>`` entries are symlinks into the device tree
(``../../../devices/pci0000:00/0000:00:01.1/0000:01:00.0``). In each device
directory the kernel provides:

- ``numa_node``: the node of the device's root complex, ``-1`` when the
  firmware does not say (always so on non-NUMA machines and most VMs);
- ``class``: ``0x060400``-style hex, base class in the top byte;
- ``driver``: a link to ``sys/bus/pci/drivers/<name>``, absent when unbound;
- ``iommu_group``: a link to ``sys/kernel/iommu_groups/<N>``, absent when
  the IOMMU is off.

A file that is missing yields ``None``; a host without ``sys/bus/pci``
(no PCI bus, or no sysfs) has no devices.
"""

from __future__ import annotations

import re

from kvmrt.sets import PciAddress
from kvmrt.errors import HostReadError
from kvmrt.host.fs import HostFS, host_read_errors
from kvmrt.host.model import PciDevice

PCI_DEVICES = "sys/bus/pci/devices"

# The kernel prints "%04x:%02x:%02x.%d"; domains wider than four digits
# exist (Intel VMD puts its devices in domain 10000 and up).
_SYSFS_ADDRESS = re.compile(
    r"(?P<domain>[0-9a-f]{4,}):(?P<bus>[0-9a-f]{2}):(?P<device>[0-9a-f]{2})\.(?P<function>[0-7])\Z"
)


def read_pci(fs: HostFS) -> dict[PciAddress, PciDevice]:
    """Every PCI function below ``fs``'s root, by address, in address order."""
    with host_read_errors():
        names = fs.listdir(PCI_DEVICES, default=[])
        devices = [read_pci_device(fs, name) for name in names]
    return {dev.address: dev for dev in sorted(devices, key=lambda d: d.address)}


def read_pci_device(fs: HostFS, name: str) -> PciDevice:
    """One ``sys/bus/pci/devices/<name>`` entry."""
    base = f"{PCI_DEVICES}/{name}"
    return PciDevice(
        address=sysfs_pci_address(fs, name),
        numa_node=_numa_node(fs, f"{base}/numa_node"),
        iommu_group=_iommu_group(fs, f"{base}/iommu_group"),
        driver=fs.readlink_name(f"{base}/driver", default=None),
        pci_class=fs.read_int(f"{base}/class", default=None, base=16),
    )


def sysfs_pci_address(fs: HostFS, name: str) -> PciAddress:
    """The address a ``sys/bus/pci/devices`` entry is named after."""
    m = _SYSFS_ADDRESS.match(name)
    if not m:
        raise HostReadError(str(fs.path(f"{PCI_DEVICES}/{name}")), "not a PCI address")
    return PciAddress(
        int(m["domain"], 16), int(m["bus"], 16), int(m["device"], 16), int(m["function"])
    )


def _numa_node(fs: HostFS, rel: str) -> int | None:
    """``numa_node``; ``-1`` (no affinity known) and a missing file are ``None``."""
    node = fs.read_int(rel, default=None)
    return node if node is not None and node >= 0 else None


def _iommu_group(fs: HostFS, rel: str) -> int | None:
    """The group number the ``iommu_group`` link points at, ``None`` without one."""
    group = fs.readlink_name(rel, default=None)
    if group is None:
        return None
    if not group.isdigit():
        raise HostReadError(str(fs.path(rel)), f"links to {group!r}, not an IOMMU group number")
    return int(group)
