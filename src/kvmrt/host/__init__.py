"""What kvmrt reads about the host it runs on.

``read_host()`` takes one snapshot of the CPU/NUMA topology and the PCI
devices, through a :class:`HostFS` rooted at ``/`` (or ``$KVMRT_FSROOT``).
"""

from __future__ import annotations

from kvmrt.host.fs import HostFS
from kvmrt.host.model import Host
from kvmrt.host.pci import read_pci
from kvmrt.host.topology import read_topology

__all__ = ["HostFS", "read_host", "read_pci", "read_topology"]


def read_host(fs: HostFS | None = None) -> Host:
    """Topology and PCI devices of the host below ``fs`` (default: ``HostFS()``).

    Raises :class:`~kvmrt.errors.HostReadError` when the root has no sysfs.
    """
    fs = fs if fs is not None else HostFS()
    return Host(topology=read_topology(fs), pci=read_pci(fs))
