"""Read the CPU and NUMA topology of a host from sysfs.

What real sysfs does, and what this reader relies on:

- ``sys/devices/system/cpu/present`` lists the CPUs that exist; each has a
  ``cpuN`` directory.
- ``cpuN/online`` holds ``1`` or ``0``; CPUs the kernel cannot unplug (cpu0
  on most x86 machines) have no such file, and the global
  ``sys/devices/system/cpu/online`` list is the truth for them.
- An offline CPU has no ``cpuN/topology/`` directory at all: its package,
  die and core are unknown until it comes back, and it has also vanished
  from its online siblings' ``thread_siblings_list``.
- ``core_id`` repeats across packages and dies and may have gaps;
  ``die_id`` is missing before Linux 5.2 and reads ``-1`` on architectures
  without dies. Logical numbering is left to :meth:`Topology.build`.
- ``sys/devices/system/node/nodeN/cpulist`` lists a node's *online* CPUs; a
  memory-only node has an empty list. The ``cpuN/nodeM`` link stays while
  the CPU is offline, so it is read for every CPU. A kernel without NUMA has
  no ``sys/devices/system/node``: one implicit node 0 holds every CPU.
- Node ids need not start at 0: firmware may number them from 1 (POWER
  LPARs, some arm64 servers), and a node whose memory went away is offline.
  The nodes are the ``nodeN`` directories that ``node/online`` lists (every
  directory when that file is absent); no node is made up, and a link to a
  node that is not among them is ignored.
"""

from __future__ import annotations

import re
from typing import Iterable

from kvmrt.errors import HostReadError
from kvmrt.host.fs import HostFS, host_read_errors
from kvmrt.host.cpuctl import CPU_DIR, is_online
from kvmrt.host.model import RawCpu, Topology

NODE_DIR = "sys/devices/system/node"

_CPU_ENTRY = re.compile(r"cpu(\d+)\Z")
_NODE_ENTRY = re.compile(r"node(\d+)\Z")


def read_topology(fs: HostFS) -> Topology:
    """The present CPUs and NUMA nodes below ``fs``'s root.

    Raises :class:`HostReadError` when the root has no
    ``sys/devices/system/cpu`` (sysfs not mounted, wrong root) or lists no
    CPU, and for any file that cannot be read or parsed.
    """
    if not fs.is_dir(CPU_DIR):
        raise HostReadError(
            str(fs.path(CPU_DIR)), "no sysfs CPU directory; is sysfs mounted below this root?"
        )
    with host_read_errors():
        present = present_cpus(fs)
        online = fs.read_cpulist(f"{CPU_DIR}/online", default=present)
        nodes = read_nodes(fs, present)
        raw = [read_cpu(fs, cpu, online_list=online, nodes=nodes.keys())
               for cpu in sorted(present)]
    return Topology.build(raw, nodes)


def present_cpus(fs: HostFS) -> frozenset[int]:
    """CPU ids from ``present``, else from the ``cpuN`` directories."""
    present = fs.read_cpulist(f"{CPU_DIR}/present", default=None)
    if present is None:
        present = frozenset(_numbered_entries(fs, CPU_DIR, _CPU_ENTRY))
    if not present:
        raise HostReadError(str(fs.path(CPU_DIR)), "no present CPU")
    return present


def read_cpu(fs: HostFS, cpu: int, *, online_list: frozenset[int],
             nodes: Iterable[int]) -> RawCpu:
    """One CPU's sysfs data; topology fields are ``None`` while it is offline.
    ``nodes`` are the host's nodes (:func:`read_nodes`)."""
    base = f"{CPU_DIR}/cpu{cpu}"
    online = is_online(fs, cpu, online_list=online_list)
    node = cpu_node(fs, cpu, nodes)
    topo = f"{base}/topology"
    # No cpuN/online file: the kernel cannot take this CPU offline (cpu0).
    hotpluggable = fs.exists(f"{base}/online")
    if not fs.is_dir(topo):
        return RawCpu(cpu=cpu, online=online, node=node, hotpluggable=hotpluggable)
    return RawCpu(
        cpu=cpu,
        online=online,
        hotpluggable=hotpluggable,
        package_id=_level_id(fs, f"{topo}/physical_package_id"),
        die_id=_level_id(fs, f"{topo}/die_id"),
        core_id=fs.read_int(f"{topo}/core_id", default=None),
        node=node,
        siblings=thread_siblings(fs, cpu),
    )


def cpu_node(fs: HostFS, cpu: int, nodes: Iterable[int]) -> int | None:
    """The node of the ``cpuN/nodeM`` link (present even while the CPU is
    offline), if it is one of ``nodes``."""
    linked = set(_numbered_entries(fs, f"{CPU_DIR}/cpu{cpu}", _NODE_ENTRY)) & set(nodes)
    return min(linked) if linked else None


def thread_siblings(fs: HostFS, cpu: int) -> frozenset[int]:
    """The online hardware threads of ``cpu``'s core, ``cpu`` included.

    ``thread_siblings_list`` is the long-standing name; ``core_cpus_list``
    (Linux 5.3+) is the same mask under its new name.
    """
    topo = f"{CPU_DIR}/cpu{cpu}/topology"
    siblings = fs.read_cpulist(f"{topo}/thread_siblings_list", default=None)
    if siblings is None:
        siblings = fs.read_cpulist(f"{topo}/core_cpus_list", default=frozenset())
    return siblings | {cpu}


def read_nodes(fs: HostFS, present: frozenset[int]) -> dict[int, frozenset[int]]:
    """NUMA node -> online CPUs from ``nodeN/cpulist``, memory-only nodes included.

    The nodes are the ``nodeN`` directories, less those that ``node/online``
    (when present) leaves out. Without ``sys/devices/system/node`` (kernel
    built without NUMA) the host is one implicit node 0 holding every
    present CPU.
    """
    if not fs.is_dir(NODE_DIR):
        return {0: present}
    shown = _numbered_entries(fs, NODE_DIR, _NODE_ENTRY)
    online = fs.read_cpulist(f"{NODE_DIR}/online", default=None)
    return {
        node: fs.read_cpulist(f"{NODE_DIR}/node{node}/cpulist", default=frozenset())
        for node in sorted(shown) if online is None or node in online
    }


def _numbered_entries(fs: HostFS, rel: str, pattern: re.Pattern[str]) -> list[int]:
    """The N of every entry of ``rel`` named like ``pattern`` (``cpuN``, ``nodeN``)."""
    names = fs.listdir(rel, default=[])
    return [int(m.group(1)) for m in map(pattern.match, names) if m]


def _level_id(fs: HostFS, rel: str) -> int:
    """A package or die id; 0 when the file is missing (``die_id`` before
    Linux 5.2) or reads ``-1`` (the architecture has no such level)."""
    value = fs.read_int(rel, default=None)
    return value if value is not None and value >= 0 else 0
