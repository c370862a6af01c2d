"""Memory: locking, huge pages, and room for the rt VMs on their nodes.

Reads the process's RLIMIT_MEMLOCK (through the
:class:`~kvmrt.hostcheck.machine.Machine` adapter), each node's
``/sys/devices/system/node/nodeN/meminfo`` (``MemTotal``, ``MemFree``) and
``hugepages/hugepages-*/{nr,free}_hugepages`` (``/proc/meminfo`` and
``/sys/kernel/mm/hugepages`` on a kernel without NUMA), and, when libvirt
answers, the memory of each rt VM's domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kvmrt.sets import format_ids
from kvmrt.hostcheck.context import NODE_DIR, Context, missing
from kvmrt.hostcheck.kernel import format_bytes, parse_meminfo
from kvmrt.hostcheck.machine import DomainMemory, Undetermined
from kvmrt.hostcheck.registry import check
from kvmrt.hostcheck.result import Finding, fail, ok, skipped, warn
from kvmrt.libvirt_sync.connection import LibvirtError, LibvirtUnreachable
from kvmrt.placement import Placement


@dataclass(frozen=True)
class NodeMemory:
    node: int
    total: int
    free: int
    huge: dict[int, tuple[int, int]] = field(default_factory=dict)  # size -> (nr, free)

    @property
    def huge_free(self) -> int:
        return sum(size * free for size, (_nr, free) in self.huge.items())


def node_memory(ctx: Context) -> dict[int, NodeMemory]:
    """Memory of each NUMA node (one node 0 on a kernel without NUMA)."""
    if not ctx.fs.is_dir(NODE_DIR):
        text = ctx.fs.read("proc/meminfo", default=None)
        if text is None:
            raise missing(ctx, "proc/meminfo")
        info = parse_meminfo(text)
        return {0: NodeMemory(0, info.get("MemTotal", 0), info.get("MemFree", 0),
                              _huge(ctx, "sys/kernel/mm/hugepages"))}
    out = {}
    for node in ctx.host.topology.nodes:
        base = f"{NODE_DIR}/node{node}"
        info = parse_meminfo(ctx.fs.read(f"{base}/meminfo", default=""))
        out[node] = NodeMemory(node, info.get("MemTotal", 0), info.get("MemFree", 0),
                               _huge(ctx, f"{base}/hugepages"))
    return out


def _huge(ctx: Context, rel: str) -> dict[int, tuple[int, int]]:
    pools = {}
    for name in ctx.fs.listdir(rel, default=[]):
        if name.startswith("hugepages-") and name.endswith("kB"):
            size = int(name[len("hugepages-"):-2]) * 1024
            pools[size] = (ctx.fs.read_int(f"{rel}/{name}/nr_hugepages", default=0),
                           ctx.fs.read_int(f"{rel}/{name}/free_hugepages", default=0))
    return pools


@check("memlock")
def memlock(ctx: Context) -> Finding:
    """How much memory this process may lock (RLIMIT_MEMLOCK)."""
    limit = ctx.machine.memlock_limit()
    try:
        total = sum(n.total for n in node_memory(ctx).values())
    except Undetermined:  # the limit is still worth reporting
        total = 0
    if limit is None:
        return ok("memory locking is unlimited for this process (RLIMIT_MEMLOCK)")
    if total and limit >= total:
        return ok(f"this process may lock {format_bytes(limit)}, all of the host's memory")
    return warn(f"this process may lock only {format_bytes(limit)} of memory (RLIMIT_MEMLOCK); "
                "libvirt raises the limit itself for the QEMU of a VM with locked memory, "
                "but QEMU run by hand and tools such as 'cyclictest -m' are bound by it",
                "ulimit -l unlimited; to keep it: '* - memlock unlimited' in "
                "/etc/security/limits.d/kvmrt.conf, LimitMEMLOCK=infinity for services")


def vm_nodes(ctx: Context, p: Placement) -> frozenset[int]:
    """The nodes an rt VM's memory comes from: its numatune, else its CPUs' nodes."""
    return frozenset(p.numatune) if p.numatune else ctx.host.topology.nodes_of(p.cpuset)


def _pools(mem: dict[int, NodeMemory], nodes) -> str:
    parts = []
    for n in sorted(nodes):
        pools = [f"{nr}x{format_bytes(size)}" for size, (nr, _f) in sorted(mem[n].huge.items())
                 if nr]
        parts.append(f"node{n} {', '.join(pools) or 'none'}")
    return "; ".join(parts)


@check("hugepages")
def hugepages(ctx: Context) -> Finding:
    """Huge pages reserved per NUMA node (``nodeN/hugepages``), on the rt VMs' nodes."""
    mem = node_memory(ctx)
    if not ctx.rt_placements:
        if not any(nr for n in mem.values() for nr, _ in n.huge.values()):
            return ok("no huge pages reserved (rt VMs run best on 1 GiB pages)")
        return ok(f"huge pages reserved: {_pools(mem, mem)}")
    nodes = frozenset().union(*(vm_nodes(ctx, p) for p in ctx.rt_placements)) & set(mem)
    bare = sorted(n for n in nodes if not any(nr for nr, _ in mem[n].huge.values()))
    if not bare:
        return ok(f"huge pages reserved on the rt VMs' nodes: {_pools(mem, nodes)}")
    where = f"/{NODE_DIR}/node{_brace(bare)}/hugepages/hugepages-1048576kB/nr_hugepages"
    return warn(f"no huge pages reserved on node(s) {format_ids(bare)} of the rt VMs: their "
                "memory is backed by 4 KiB pages (more TLB misses)",
                f"reserve 1 GiB pages there (echo N > {where}; at boot: hugepagesz=1G "
                "hugepages=N) and give the domains <memoryBacking><hugepages/>")


def _brace(ids: list[int]) -> str:
    return str(ids[0]) if len(ids) == 1 else "{" + ",".join(map(str, ids)) + "}"


@check("rt-memory")
def rt_memory(ctx: Context) -> Finding | None:
    """The rt VMs' memory (from libvirt) fits on the nodes they use."""
    if not ctx.rt_placements:
        return None
    mem = node_memory(ctx)
    nodes = frozenset().union(*(vm_nodes(ctx, p) for p in ctx.rt_placements)) & set(mem)
    total = sum(mem[n].total for n in nodes)
    free = sum(mem[n].free for n in nodes)
    room = (f"node(s) {format_ids(nodes)} have {format_bytes(total)}, "
            f"{format_bytes(free)} free")
    try:
        domains = {p.vm.label: ctx.libvirt.domain_memory(p.vm.uuid, p.vm.name)
                   for p in ctx.rt_placements}
    except LibvirtUnreachable:
        return skipped(f"the VMs' memory is unknown while libvirt is unreachable; {room}")
    except LibvirtError as err:
        return skipped(f"the VMs' memory is unknown ({err}); {room}")
    return _fits(domains, mem, nodes, room)


def _fits(domains: dict[str, DomainMemory | None], mem: dict[int, NodeMemory],
          nodes: frozenset[int], room: str) -> Finding:
    known = [d for d in domains.values() if d is not None]
    undefined = [name for name, d in domains.items() if d is None]
    parts = [f"{d.name} has {format_bytes(d.memory)}" + (" (running)" if d.active else "")
             for d in known]
    parts += [f"{name} is not defined in libvirt (memory unknown)" for name in undefined]
    text = f"{', '.join(parts)}; {room}"
    if sum(d.memory for d in known) > sum(mem[n].total for n in nodes):
        return fail(f"{text}: the rt VMs need more than the nodes hold",
                    "give the VMs less memory, or more nodes (numatune, cpuset)")
    waiting = [d for d in known if not d.active]
    huge = sum(d.memory for d in waiting if d.hugepages)
    plain = sum(d.memory for d in waiting) - huge
    if plain > sum(mem[n].free for n in nodes) or huge > sum(mem[n].huge_free for n in nodes):
        return warn(f"{text}: the rt VMs that are shut off do not fit in what is free now",
                    "free memory on those nodes (or reserve huge pages for VMs that use "
                    "them) before kvmrt-boot")
    return ok(text)
